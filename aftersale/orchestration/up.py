"""``aftersale up``: the whole system on one machine, until Ctrl-C.

1. A Prefect server (``prefect server start`` on 127.0.0.1), unless ``PREFECT_API_URL`` or the
   chosen port already answers ``/api/health``: then that one is used.
2. The web app (``aftersale serve``) in a subprocess, with ``PREFECT_API_URL`` set so every
   stored webhook emits ``aftersale.inbox.received``.
3. The deployments of :mod:`aftersale.orchestration.deployments`, served from this process with
   ``prefect.serve``: each run is a subprocess of this one, no work pool or worker needed. The
   runner polls every ``poll_seconds`` (Prefect's default is 10 s), which is most of the delay
   between a webhook and its flow run.

Children run in their own sessions so Ctrl-C reaches this process only, and they stop in order
(web app, then runner, then the server the runner reports to). The flow runs and the web app
read the same environment and ``.env`` as this process, so they see the same settings.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from rich.console import Console

from aftersale.config import Settings, load_settings
from aftersale.core.errors import ConfigError

LOCALHOST = "127.0.0.1"


class UpError(RuntimeError):
    """Something ``aftersale up`` needs did not start; the message says what to do."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # both uvicorn and Prefect shut down cleanly on it
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(url: str, child: Child | None, timeout: float) -> None:
    """Until ``url`` answers 200; fail early when the child that should serve it has died."""
    deadline = time.monotonic() + timeout
    while not answers(url):
        if child is not None and child.process.poll() is not None:
            raise UpError(f"{child.name} exited with code {child.process.returncode} before "
                          f"{url} answered; its output above says why")
        if time.monotonic() > deadline:
            raise UpError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.25)


def spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    return Child(name, subprocess.Popen(args, env=env, start_new_session=True))


def prefect_api(prefect_port: int, env: dict[str, str], children: list[Child],
                timeout: float) -> str:
    """The API URL of a running Prefect server: the configured one, or one started here."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        if not answers(f"{configured.rstrip('/')}/health"):
            raise UpError(f"PREFECT_API_URL={configured} does not answer; start that server, or "
                          "unset PREFECT_API_URL to let `aftersale up` start one")
        return configured.rstrip("/")
    api = f"http://{LOCALHOST}:{prefect_port}/api"
    if answers(f"{api}/health"):
        return api  # a `prefect server start` of the operator's own
    # The UI asks the server for its API's URL, which Prefect derives from its port setting,
    # not from --port: without this, any port but 4200 gives a UI that cannot reach its API.
    server_env = {**env, "PREFECT_UI_API_URL": env.get("PREFECT_UI_API_URL") or api}
    server = spawn("prefect server", [sys.executable, "-m", "prefect", "server", "start",
                                      "--host", LOCALHOST, "--port", str(prefect_port)], server_env)
    children.append(server)
    wait_for(f"{api}/health", server, timeout)
    return api


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


async def release_orphaned_runs(deployments: list[str], why: str) -> int:
    """Mark runs of these deployments that are still pending or running as crashed.

    Served runs are child processes of ``aftersale up``, so when it starts (or has stopped
    serving) any such run is an orphan of an ``up`` that stopped uncleanly. Left alone, it holds
    its deployment's concurrency slot until its lease runs out (5 minutes), or for good when
    the Prefect server restarted meanwhile, as leases live in the server's memory; with
    ``CANCEL_NEW`` every new run would be cancelled. A forced state change releases the slot.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    live = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    async with get_client() as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=deployments)),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=live))))
        for run in runs:
            await client.set_flow_run_state(run.id, Crashed(message=f"orphaned: {why}"), force=True)
    return len(runs)


def _finish_runs(out: Console, grace: float = 20.0) -> None:
    """Flow runs are child processes of this one. The runner stops its own on Ctrl-C; should
    any be left (a SIGTERM), let them end their pass, then stop them: a run stopped mid-batch
    rolls back, and one stopped mid-send is what the message claims are for."""
    running = multiprocessing.active_children()
    if running:
        out.print(f"waiting up to {grace:.0f} s for {len(running)} flow run(s) to finish", highlight=False)
    deadline = time.monotonic() + grace
    for process in running:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in multiprocessing.active_children():
        process.terminate()  # the engine reports the run crashed, which frees its slot
        process.join(10)


def _interrupt_on_sigterm() -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


@contextmanager
def _children() -> Iterator[list[Child]]:
    children: list[Child] = []
    try:
        yield children
    finally:
        for child in reversed(children):  # the web app before the server it reports to
            child.stop()


def run_up(settings: Settings, host: str = LOCALHOST, port: int = 8000, prefect_port: int = 4200,
           poll_seconds: float = 1.0, out: Console | None = None,
           startup_timeout: float = 120.0) -> None:
    """Start everything, serve the deployments until Ctrl-C (or SIGTERM), then stop it all."""
    from aftersale.intake.notify import prefect_events_enabled
    from aftersale.orchestration.deployments import SPECS, runner_deployments
    from aftersale.pipeline.runtime import open_runtime

    out = out or Console()
    _interrupt_on_sigterm()  # so a SIGTERM while starting also stops the children
    settings.require("api_token", "secret_key")
    open_runtime(settings).engine.dispose()  # migrate here once, not in three processes at once
    env = dict(os.environ)
    env.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", str(poll_seconds))
    if _port_taken(host, port):  # else the health check below would ask someone else's app
        raise UpError(f"port {port} on {host} is in use (another `aftersale up`?); stop it "
                      "or pass --port")
    with _children() as children:
        api = prefect_api(prefect_port, env, children, startup_timeout)
        env["PREFECT_API_URL"] = api
        os.environ["PREFECT_API_URL"] = api  # for flow runs, which inherit this environment
        web = spawn("web app", [sys.executable, "-m", "aftersale.cli", "serve", "--host", host,
                                "--port", str(port)], env)
        children.append(web)
        web_url = f"http://{host}:{port}"
        wait_for(f"{web_url}/healthz", web, startup_timeout)

        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_RUNNER_POLL_FREQUENCY,
            temporary_settings,
        )

        poll = float(env["PREFECT_RUNNER_POLL_FREQUENCY"])
        names = [spec.name for spec in SPECS]
        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_RUNNER_POLL_FREQUENCY: poll}):
            released = asyncio.run(release_orphaned_runs(names, "its `aftersale up` stopped"))
            if released:
                out.print(f"marked {released} run(s) left running by an earlier `aftersale up` as "
                          "crashed, freeing their deployments' concurrency slots", highlight=False)
            if not prefect_events_enabled(settings):
                out.print("[yellow]AFTERSALE_PREFECT_EVENTS=false: webhooks start no flow run; "
                          "the schedules pick them up[/]")
            _banner(out, api, web_url, poll, names)
            from prefect import serve

            try:
                # Returns on Ctrl-C; on SIGTERM the runner pauses the schedules, then exits.
                serve(*runner_deployments(), limit=len(SPECS) + 1, print_starting_message=False)
            except SystemExit:
                pass
            finally:
                web.stop()  # no new work while the runs finish
                _finish_runs(out)
                try:
                    asyncio.run(release_orphaned_runs(names, "`aftersale up` stopped during the run"))
                except Exception as exc:  # noqa: BLE001 - the next start releases them
                    out.print(f"could not check for unfinished runs: {exc}", highlight=False)
    out.print("stopped")


def _banner(out: Console, api: str, web_url: str, poll: float, names: list[str]) -> None:
    ui = api.removesuffix("/api")
    out.print(f"[bold]aftersale is up[/] (Ctrl-C stops it)\n"
              f"  Prefect UI     {ui}  (flow runs, logs, artifacts)\n"
              f"  Prefect API    {api}\n"
              f"  web app        {web_url}\n"
              f"    POST {web_url}/events            normalized events (Bearer AFTERSALE_API_TOKEN)\n"
              f"    POST {web_url}/webhooks/shopify  Shopify webhooks\n"
              f"    GET  {web_url}/healthz\n"
              f"  deployments    {', '.join(names)} (served here, runner polls every {poll:g} s)",
              highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m aftersale.orchestration.up``: the same as ``aftersale up``."""
    parser = argparse.ArgumentParser(prog="aftersale up", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=LOCALHOST, help="web app host")
    parser.add_argument("--port", type=int, default=8000, help="web app port")
    parser.add_argument("--prefect-port", type=int, default=4200,
                        help="port of the Prefect server started here")
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    try:
        run_up(load_settings(), args.host, args.port, args.prefect_port,
               out=Console(soft_wrap=True))
    except (ConfigError, UpError) as exc:
        err.print(f"aftersale up: {exc}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
