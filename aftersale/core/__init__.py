"""The pure core: the event contract, journeys and their engine, conditions, segment rules,
sending rules, channel choice, survey scales and reply reading, signed links.

Nothing here touches a database, a network, Prefect or a provider SDK (an import-linter
contract in ``make test`` keeps it so): every rule is unit-tested with plain values.
"""
