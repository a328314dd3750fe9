"""The stage commands: ``shadow``, ``enable``, ``disable``, ``off``, ``complete``, ``rollback``."""

from __future__ import annotations

import time
from typing import Any

import typer

from thorcut.errors import UsageError, WaitTimedOut
from thorcut.features import Stage, check_feature
from thorcut.flags.store import FlagStore, Outcome
from thorcut.options import (
    ConfigOpt,
    DryRunOpt,
    ExpectVersionOpt,
    JsonOpt,
    ReasonOpt,
    RedisUrlOpt,
    TimeoutOpt,
    WaitOpt,
)
from thorcut.output import err, out, print_json, safe
from thorcut.session import open_session

app = typer.Typer()

ResetForceOpt = typer.Option(
    False, "--force", help="On a reset store (Redis lost its data): change it anyway and start a new epoch "
    "(needs --reason; audited).")  # fmt: skip
FeatureArg = typer.Argument(..., help="account_balance, positions, intraday, global_market (or a manifest feature).")


def _change(
    feature: str,
    to: Stage,
    *,
    percent: int | None = None,
    reason: str,
    force: bool = False,
    expect_version: int | None,
    dry_run: bool,
    wait: float | None,
    as_json: bool,
    redis_url: str | None,
    timeout: float | None,
    config: Any,
    rollback: bool = False,
) -> None:
    session = open_session(redis_url, timeout, config)
    check_feature(feature, session.settings.features)
    outcome = session.store.change(
        feature,
        to,
        percent=percent,
        reason=reason,
        force=force,
        expect_version=expect_version,
        dry_run=dry_run,
        rollback=rollback,
    )
    _report([outcome], session.store, wait, as_json)


def _report(outcomes: list[Outcome], store: FlagStore, wait: float | None, as_json: bool) -> None:
    reset = next((o for o in outcomes if o.reset), None)
    if reset is not None:
        err().print(safe(f"Warning: {reset.reset}. This change started a new epoch; the reset is recorded in "
                         f"the audit log (entry {reset.entry_id})."), style="bold red")  # fmt: skip
    waited = [_wait(store, o, wait) for o in outcomes] if wait is not None else []
    if as_json:
        doc: dict[str, Any] = {"changes": [o.to_dict() for o in outcomes]}
        if wait is not None:
            doc["wait"] = waited
        print_json(doc)
    else:
        console = out()
        for o in outcomes:
            console.print(_describe(o))
        for w in waited:
            console.print(_describe_wait(w))
    missing = [w for w in waited if w["missing"]]
    if missing:
        names = ", ".join(f"{w['feature']}: {', '.join(w['missing'])}" for w in missing)
        raise WaitTimedOut(
            f"the change is committed, but these workers did not acknowledge it within {wait:g} s: {names}"
        )


def _describe(o: Outcome) -> Any:
    b, a = o.before, o.after
    pct = f" ({a.percent}%)" if a.stage is Stage.LIVE else ""
    if not o.changed:
        return safe(f"{b.feature} is already {b.stage.value}{pct}; nothing changed (version {b.version})")
    verb = "would move" if o.dry_run else "moved"
    text = safe(f"{b.feature}: {verb} {b.stage.value} → {a.stage.value}{pct}, version {b.version} → {a.version}")
    if o.dry_run:
        text.append(" (dry run: nothing written)", style="dim")
    if o.forced:
        past = "a reset store" if o.reset else "the parity gate"
        text.append(f" — FORCED past {past} (recorded)", style="bold yellow")
    return text


def _wait(store: FlagStore, o: Outcome, seconds: float) -> dict[str, Any]:
    """Poll the acks of ``o``'s version until every live worker has one, or ``seconds`` pass."""
    feature, version = o.after.feature, o.after.version
    result: dict[str, Any] = {
        "feature": feature,
        "version": version,
        "workers": [],
        "missing": [],
        "ms": None,
        # Why nothing was waited for: "unchanged", "dry_run" or "no_workers"; None if waited.
        "skipped": None,
    }
    if not o.changed or o.dry_run:
        result["skipped"] = "dry_run" if o.dry_run else "unchanged"
        return result
    start_wall, start = time.time(), time.perf_counter()
    deadline = start + seconds
    workers = store.live_workers()
    result["workers"] = workers
    if not workers:
        result["skipped"] = "no_workers"
        return result
    while True:
        acks = store.acks(feature, version)
        missing = [w for w in workers if w not in acks]
        if not missing:
            result["ms"] = round((time.perf_counter() - start) * 1000, 2)
            # Relative to the moment the change returned; a worker may apply it before the reply
            # reaches us (the notification is published inside the commit), so values can be < 0.
            result["ack_ms"] = {w: round((acks[w] - start_wall) * 1000, 2) for w in workers}
            return result
        if time.perf_counter() >= deadline:
            # A worker that left meanwhile is not waited for; one still registered is missing.
            alive = set(store.live_workers())
            result["missing"] = [w for w in missing if w in alive]
            if not result["missing"]:
                result["ms"] = round((time.perf_counter() - start) * 1000, 2)
            return result
        time.sleep(0.002)


def _describe_wait(w: dict[str, Any]) -> Any:
    if w["skipped"] == "unchanged":
        return safe(f"{w['feature']}: nothing changed, so no worker has anything to apply; nothing to wait for")
    if w["skipped"] == "dry_run":
        return safe(f"{w['feature']}: dry run, nothing written; nothing to wait for")
    if w["skipped"] == "no_workers":
        return safe(f"{w['feature']}: no backend worker is registered, so nothing acknowledged it; nothing to wait for")
    if w["missing"]:
        return safe(f"{w['feature']}: {len(w['missing'])} of {len(w['workers'])} workers did not acknowledge")
    return safe(f"{w['feature']}: all {len(w['workers'])} workers applied version {w['version']} in {w['ms']:.1f} ms")


@app.command()
def shadow(
    feature: str = FeatureArg,
    force: bool = ResetForceOpt,
    reason: ReasonOpt = "",
    expect_version: ExpectVersionOpt = None,
    dry_run: DryRunOpt = False,
    wait: WaitOpt = None,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Start broadcasting a feature while clients keep reading REST (off → shadow).

    Example: thorcut shadow positions --reason "start parity" --wait
    """
    _change(
        feature,
        Stage.SHADOW,
        force=force,
        reason=reason,
        expect_version=expect_version,
        dry_run=dry_run,
        wait=wait,
        as_json=as_json,
        redis_url=redis_url,
        timeout=timeout,
        config=config,
    )


@app.command()
def enable(
    feature: str = FeatureArg,
    percent: int | None = typer.Option(None, "--percent", min=0, max=100, help="Share of clients on WebSocket."),
    force: bool = typer.Option(
        False, "--force", help="Override the parity gate, or a reset store (needs --reason; audited)."
    ),
    reason: ReasonOpt = "",
    expect_version: ExpectVersionOpt = None,
    dry_run: DryRunOpt = False,
    wait: WaitOpt = None,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Let clients read a feature from WebSocket (shadow → live), gated on a valid PASS verdict.

    Example: thorcut enable account_balance --percent 10 --wait
    """
    _change(
        feature,
        Stage.LIVE,
        percent=percent,
        reason=reason,
        force=force,
        expect_version=expect_version,
        dry_run=dry_run,
        wait=wait,
        as_json=as_json,
        redis_url=redis_url,
        timeout=timeout,
        config=config,
    )


@app.command()
def disable(
    feature: str = FeatureArg,
    reason: ReasonOpt = "",
    expect_version: ExpectVersionOpt = None,
    dry_run: DryRunOpt = False,
    wait: WaitOpt = None,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Roll a feature back to REST at once (live|complete → shadow); never gated.

    Refused (exit 3) for a feature that is off: a rollback never starts broadcasting.

    Example: thorcut disable positions --reason "mismatch on avg_price" --wait
    """
    _change(
        feature,
        Stage.SHADOW,
        rollback=True,
        reason=reason,
        expect_version=expect_version,
        dry_run=dry_run,
        wait=wait,
        as_json=as_json,
        redis_url=redis_url,
        timeout=timeout,
        config=config,
    )


@app.command()
def off(
    feature: str = FeatureArg,
    force: bool = ResetForceOpt,
    reason: ReasonOpt = "",
    expect_version: ExpectVersionOpt = None,
    dry_run: DryRunOpt = False,
    wait: WaitOpt = None,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Stop broadcasting a feature (shadow → off).

    Example: thorcut off intraday
    """
    _change(
        feature,
        Stage.OFF,
        force=force,
        reason=reason,
        expect_version=expect_version,
        dry_run=dry_run,
        wait=wait,
        as_json=as_json,
        redis_url=redis_url,
        timeout=timeout,
        config=config,
    )


@app.command()
def complete(
    feature: str = FeatureArg,
    force: bool = ResetForceOpt,
    reason: ReasonOpt = "",
    expect_version: ExpectVersionOpt = None,
    dry_run: DryRunOpt = False,
    wait: WaitOpt = None,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Retire a feature's REST polling in every client (live → complete).

    Example: thorcut complete account_balance --reason "a week live at 100%"
    """
    _change(
        feature,
        Stage.COMPLETE,
        force=force,
        reason=reason,
        expect_version=expect_version,
        dry_run=dry_run,
        wait=wait,
        as_json=as_json,
        redis_url=redis_url,
        timeout=timeout,
        config=config,
    )


@app.command()
def rollback(
    all_features: bool = typer.Option(False, "--all", help="Every live or complete feature (required)."),
    reason: ReasonOpt = "",
    dry_run: DryRunOpt = False,
    wait: WaitOpt = None,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Move every live or complete feature back to shadow in one atomic step.

    Example: thorcut rollback --all --reason "incident 4211"
    """
    if not all_features:
        raise UsageError("rollback needs --all (to roll back one feature use `thorcut disable FEATURE`)")
    session = open_session(redis_url, timeout, config)
    outcomes = session.store.rollback_all(reason=reason, dry_run=dry_run)
    if not outcomes and not as_json:
        err().print("No feature is live or complete; nothing to roll back.")
    _report(outcomes, session.store, wait, as_json)
