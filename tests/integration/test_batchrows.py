"""RowSet: a batch's rows as plain objects, loaded with Core and written back with executemany.
process-events trusts it to write every change it made and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from aftersale.db.batchrows import RowSet
from aftersale.db.models import Customer, Enrollment, JourneyVersion, Order
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START


def _seed(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        session.add_all([
            Customer(id="c1", email="a@example.com", created_at=START, updated_at=START),
            Customer(id="c2", email="b@example.com", created_at=START, updated_at=START,
                     referral_code="REF-C2"),
        ])
        session.flush()
        session.add(Order(id="o1", customer_id="c1", placed_at=START, total=Decimal("12.50"),
                          currency="EUR", items=[{"sku": "A"}], discount_codes=[]))


@contextmanager
def _statements(session: Session) -> Iterator[list[str]]:
    """The SQL the session sends (one entry per execute or executemany)."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append(statement.split()[0].upper())

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_loaded_rows_carry_the_models_values_and_one_object_per_key(rt: Runtime) -> None:
    _seed(rt)
    with rt.factory() as session:
        customers = RowSet(Customer)
        by_id = customers.by_keys(session, {"c1", "c2", "nobody"})
        assert sorted(by_id) == ["c1", "c2"]
        orm = session.get(Customer, "c2")
        assert orm is not None
        for name in customers.columns:
            assert getattr(by_id["c2"], name) == getattr(orm, name), name
        assert by_id["c2"].created_at.tzinfo is not None  # the column types still apply

        by_id["c2"].email = "changed@example.com"
        again = customers.load(session, Customer.referral_code, {"REF-C2"})
        assert again == [by_id["c2"]]  # the same object, as this batch changed it
        assert again[0].email == "changed@example.com"
        assert not isinstance(again[0], Customer)  # plain, not an ORM instance


def test_write_inserts_new_rows_with_defaults_and_updates_only_changed_columns(
        rt: Runtime) -> None:
    _seed(rt)
    with rt.factory() as session, session.begin():
        version = JourneyVersion(journey="j", version="v1", definition={}, created_at=START)
        session.add(version)
        session.flush()
        customers, orders, enrollments = RowSet(Customer), RowSet(Order), RowSet(Enrollment)
        c1, c2 = (customers.by_keys(session, {"c1", "c2"})[k] for k in ("c1", "c2"))
        order = orders.by_keys(session, {"o1"})["o1"]
        new = customers.add(id="c3", created_at=START, updated_at=START)
        assert new.consent_email is False  # the column's default
        enrollments.add(journey="j", journey_version_id=version.id, customer_id="c3",
                        entry_key="customer", segment="s", status="active", enrolled_at=START)

        c1.first_name = "Ada"
        c2.first_name, c2.locale = "Bea", "de"
        order.status = order.status  # set to what it was: no change, no write
        # Someone else changes a column this batch did not touch; the write must keep it.
        session.execute(update(Customer).where(Customer.id == "c1").values(country="TR"))
        with _statements(session) as sent:
            for rows in (customers, orders, enrollments):
                rows.write(session)
        # one insert per table with new rows, one update per set of changed columns
        assert sorted(sent) == ["INSERT", "INSERT", "UPDATE", "UPDATE"]

    with rt.factory() as session:
        stored = {c.id: c for c in session.scalars(select(Customer))}
        assert (stored["c1"].first_name, stored["c1"].country) == ("Ada", "TR")
        assert (stored["c2"].first_name, stored["c2"].locale) == ("Bea", "de")
        assert stored["c3"].consent_sms is False
        enrollment = session.scalars(select(Enrollment)).one()
        assert enrollment.id is not None and enrollment.pc == 0
        assert session.get(Order, "o1").status == "placed"  # type: ignore[union-attr]


def test_a_row_written_once_and_changed_again_is_updated_by_the_next_write(
        rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        customers = RowSet(Customer)
        row = customers.add(id="c9", created_at=START, updated_at=START)
        customers.write(session)
        row.email = "late@example.com"
        with _statements(session) as sent:
            customers.write(session)
            customers.write(session)  # nothing changed since
        assert sent == ["UPDATE"]
    with rt.factory() as session:
        assert session.get(Customer, "c9").email == "late@example.com"  # type: ignore[union-attr]


def test_a_column_the_model_lacks_is_refused() -> None:
    with pytest.raises(TypeError, match="emial"):
        RowSet(Customer).add(id="c1", emial="a@example.com")
