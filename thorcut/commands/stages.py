"""The stage commands: ``shadow``, ``enable``, ``disable``, ``off``, ``complete``, ``rollback``.

They are siblings: each declares only what is its own (the target stage, ``enable``'s ``--percent``,
``rollback``'s ``--all``) and takes the shared option groups of :mod:`thorcut.cli.options`
whole; one implementation (:func:`_change`, then :func:`_report`) changes the store, waits for
the workers (:func:`thorcut.flags.acks.wait_for_acks`) and prints. ``complete`` also warns of
clients that still read the feature's REST endpoints and that it does not switch
(:func:`_warn_rest_readers`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from thorcut.cli.options import CHANGE_OPTIONS, STORE_OPTIONS, with_options
from thorcut.cli.output import err, out, print_json
from thorcut.cli.session import Session, open_session
from thorcut.errors import UsageError, WaitTimedOut
from thorcut.flags.acks import AckWait, wait_for_acks
from thorcut.flags.stages import Stage, check_feature
from thorcut.flags.store import FlagStore, Outcome
from thorcut.text import safe

if TYPE_CHECKING:
    from thorcut.flags.restreads import Reader

app = typer.Typer()

FeatureArg = Annotated[
    str, typer.Argument(help="account_balance, positions, intraday, global_market (or a manifest feature).")
]
ResetForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="On a reset store (Redis lost its data): change it anyway and start a new epoch "
        "(needs --reason; audited).",
    ),
]
GateForceOpt = Annotated[
    bool, typer.Option("--force", help="Override the parity gate, or a reset store (needs --reason; audited).")
]
PercentOpt = Annotated[int | None, typer.Option("--percent", min=0, max=100, help="Share of clients on WebSocket.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every live or complete feature (required).")]


def _change(
    feature: str,
    to: Stage,
    *,
    percent: int | None = None,
    force: bool = False,
    rollback: bool = False,
    reason: str,
    expect_version: int | None,
    dry_run: bool,
    wait: float | None,
    as_json: bool,
    redis_url: str | None,
    timeout: float | None,
    config: Path | None,
    then: Callable[[Session, Outcome], None] | None = None,
) -> None:
    """The one implementation behind the single-feature commands: move ``feature`` to ``to``, and
    call ``then`` once the change is made (before waiting for the workers)."""
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
    if then is not None:
        then(session, outcome)
    _report([outcome], session.store, wait, as_json)


def _rollback_all(
    *,
    reason: str,
    dry_run: bool,
    wait: float | None,
    as_json: bool,
    redis_url: str | None,
    timeout: float | None,
    config: Path | None,
) -> None:
    session = open_session(redis_url, timeout, config)
    outcomes = session.store.rollback_all(reason=reason, dry_run=dry_run)
    if not outcomes and not as_json:
        err().print("No feature is live or complete; nothing to roll back.")
    _report(outcomes, session.store, wait, as_json)


def _report(outcomes: list[Outcome], store: FlagStore, wait: float | None, as_json: bool) -> None:
    reset = next((o for o in outcomes if o.reset), None)
    if reset is not None:
        err().print(safe(f"Warning: {reset.reset}. This change started a new epoch; the reset is recorded in "
                         f"the audit log (entry {reset.entry_id})."), style="bold red")  # fmt: skip
    waited = [wait_for_acks(store, o, wait) for o in outcomes] if wait is not None else []
    if as_json:
        doc: dict[str, Any] = {"changes": [o.to_dict() for o in outcomes]}
        if wait is not None:
            doc["wait"] = [w.to_dict() for w in waited]
        print_json(doc)
    else:
        console = out()
        for o in outcomes:
            console.print(_describe(o))
        for w in waited:
            console.print(_describe_wait(w))
    missing = [w for w in waited if w.missing]
    if missing:
        names = ", ".join(f"{w.feature}: {', '.join(w.missing)}" for w in missing)
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


def _describe_wait(w: AckWait) -> Any:
    if w.skipped == "unchanged":
        return safe(f"{w.feature}: nothing changed, so no worker has anything to apply; nothing to wait for")
    if w.skipped == "dry_run":
        return safe(f"{w.feature}: dry run, nothing written; nothing to wait for")
    if w.skipped == "no_workers":
        return safe(f"{w.feature}: no backend worker is registered, so nothing acknowledged it; nothing to wait for")
    if w.missing:
        return safe(f"{w.feature}: {len(w.missing)} of {len(w.workers)} workers did not acknowledge")
    return safe(f"{w.feature}: all {len(w.workers)} workers applied version {w.version} in {w.ms:.1f} ms")


@app.command()
@with_options(*CHANGE_OPTIONS, *STORE_OPTIONS)
def shadow(feature: FeatureArg, force: ResetForceOpt = False, **options: Any) -> None:
    """Start broadcasting a feature while clients keep reading REST (off → shadow).

    Example: thorcut shadow positions --reason "start parity" --wait
    """
    _change(feature, Stage.SHADOW, force=force, **options)


@app.command()
@with_options(*CHANGE_OPTIONS, *STORE_OPTIONS)
def enable(feature: FeatureArg, percent: PercentOpt = None, force: GateForceOpt = False, **options: Any) -> None:
    """Let clients read a feature from WebSocket (shadow → live), gated on a valid PASS verdict.

    Example: thorcut enable account_balance --percent 10 --wait
    """
    _change(feature, Stage.LIVE, percent=percent, force=force, **options)


@app.command()
@with_options(*CHANGE_OPTIONS, *STORE_OPTIONS)
def disable(feature: FeatureArg, **options: Any) -> None:
    """Roll a feature back to REST at once (live|complete → shadow); never gated.

    Refused (exit 3) for a feature that is off: a rollback never starts broadcasting.

    Example: thorcut disable positions --reason "mismatch on avg_price" --wait
    """
    _change(feature, Stage.SHADOW, rollback=True, **options)


@app.command()
@with_options(*CHANGE_OPTIONS, *STORE_OPTIONS)
def off(feature: FeatureArg, force: ResetForceOpt = False, **options: Any) -> None:
    """Stop broadcasting a feature (shadow → off).

    Example: thorcut off intraday
    """
    _change(feature, Stage.OFF, force=force, **options)


@app.command()
@with_options(*CHANGE_OPTIONS, *STORE_OPTIONS)
def complete(feature: FeatureArg, force: ResetForceOpt = False, **options: Any) -> None:
    """Retire a feature's REST polling in every client (live → complete).

    Warns on stderr (it never refuses) when the feature's REST endpoints were read in the last
    5 minutes by clients this does not switch: page builds older than the one served now, and
    scripts or services. `thorcut retire` says when the endpoints can be deleted.

    Example: thorcut complete account_balance --reason "a week live at 100%"
    """
    _change(feature, Stage.COMPLETE, force=force, then=_warn_rest_readers, **options)


def _warn_rest_readers(session: Session, outcome: Outcome) -> None:
    """Warn on stderr of clients that read the feature's REST endpoints in the last 5 minutes and
    that ``complete`` does not move to WebSocket: page builds older than the one served now (the
    current build switches on the ``flags`` push) and every client that is not a page. Never
    changes the outcome or the exit code: the change is made, and an unreadable count must not
    look like a failed change."""
    from thorcut.flags.restreads import WARN_WINDOW_S, read_retirement

    feature = outcome.after.feature
    try:
        retirement = read_retirement(session.client, session.keys, feature, WARN_WINDOW_S)
    except Exception as exc:  # advisory only (see the docstring)
        err().print(safe(f"Note: could not read who still reads {feature}'s REST endpoints ({exc})."), soft_wrap=True)
        return
    found = retirement.unswitched()
    if not found:
        return
    console = err()
    console.print(
        safe(f"Warning: {feature}'s REST endpoints were read in the last 5 min by clients that complete does "
             "not switch to WebSocket:"), style="yellow", soft_wrap=True)  # fmt: skip
    groups = (
        ("old page builds still open", found.old_pages),
        (f"page builds (the current build is unknown: {session.keys.page_build} is not set)", found.pages),
        ("scripts or services that poll REST", found.clients),
    )
    for what, readers in groups:
        if readers:
            console.print(safe(f"  {what}: {_readers(readers, retirement.reads.window.now)}"), soft_wrap=True)
    console.print(
        safe(f"Run `thorcut retire {feature}` before deleting the endpoint: it exits 0 once nobody reads it."),
        soft_wrap=True,
    )


def _readers(readers: tuple[Reader, ...], now: float, limit: int = 10) -> str:
    from thorcut.flags.restreads import short

    shown = [
        f"{short(r.label)} ({r.reads} read{'s' if r.reads != 1 else ''}, last {r.describe_seen(now)})"
        for r in readers[:limit]
    ]
    more = len(readers) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


#: ``rollback --all`` moves several features at once: there is no one version to expect.
_ROLLBACK_OPTIONS = tuple(o for o in CHANGE_OPTIONS if o.name != "expect_version")


@app.command()
@with_options(*_ROLLBACK_OPTIONS, *STORE_OPTIONS)
def rollback(all_features: AllOpt = False, **options: Any) -> None:
    """Move every live or complete feature back to shadow in one atomic step.

    Example: thorcut rollback --all --reason "incident 4211"
    """
    if not all_features:
        raise UsageError("rollback needs --all (to roll back one feature use `thorcut disable FEATURE`)")
    _rollback_all(**options)
