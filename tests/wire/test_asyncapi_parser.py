"""The AsyncAPI documents are valid AsyncAPI 3.0, by the AsyncAPI Initiative's own parser.

``tests/asyncapi`` pins ``@asyncapi/parser`` (package-lock.json) and ``check.mjs`` parses documents
with it. ``npm ci`` installs it there when ``node_modules`` is missing or older than the lock file.
Nothing here skips: without Node.js and npm the tests fail, naming how to install them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.runner import Run
from thorcut.manifest import DEFAULT_MANIFEST, build_manifest
from thorcut.wire.asyncapi import document

CHECKER = Path(__file__).resolve().parents[1] / "asyncapi"
INSTALL_TIMEOUT = 300


def _installed() -> bool:
    stamp = CHECKER / "node_modules" / ".package-lock.json"  # npm rewrites it on every install
    lock = CHECKER / "package-lock.json"
    return stamp.is_file() and stamp.stat().st_mtime >= lock.stat().st_mtime


@pytest.fixture(scope="module")
def parse(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``parse({"name": doc, …})`` → ``{"name": {"valid", "version", "errors", "warnings"}, …}``."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("the AsyncAPI check needs Node.js 18+ with npm (Debian: apt-get install nodejs npm)", pytrace=False)
    folder = tmp_path_factory.mktemp("asyncapi")
    if not _installed():
        log = folder / "npm.log"
        with log.open("wb") as out:
            try:
                # --ignore-scripts: nothing of the parser's needs building, and a dependency's
                # postinstall would only report the install to its author.
                done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=CHECKER,
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=INSTALL_TIMEOUT, check=False)  # fmt: skip
            except subprocess.TimeoutExpired:
                pytest.fail(f"`npm ci` in {CHECKER} took over {INSTALL_TIMEOUT} s; see {log}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(f"`npm ci` in {CHECKER} failed:\n{log.read_text(errors='replace')[-3000:]}", pytrace=False)

    def run(docs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        files = []
        for name, doc in docs.items():
            path = folder / f"{name}.json"
            path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
            files.append(str(path))
        done = subprocess.run([node, "check.mjs", *files], cwd=CHECKER, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        results = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(results) == len(files), done.stderr
        assert (done.returncode == 0) == all(r["valid"] for r in results), (done.returncode, done.stderr)
        return {Path(r["file"]).stem: r for r in results}

    return run


def test_thorcuts_documents_and_the_backends_are_valid_asyncapi_3(
    parse: Any, run: Run, tmp_path: Path, thor_env: dict[str, str]
) -> None:
    from thor_trading.openapi import asyncapi, description

    openapi = tmp_path / "openapi.json"
    openapi.write_text(json.dumps(description()))
    printed = run("asyncapi", "--server", "https://token:secret@thor.example/")
    assert printed.exit_code == 0, printed.stderr
    with_data = run("asyncapi", "--openapi", str(openapi))
    assert with_data.exit_code == 0, with_data.stderr
    other_shapes = build_manifest(
        {"quotes": {"types": ["quote"], "rest": [{"type": "quote", "path": "/q/{key}"}],
                    "ws": {"seq": "meta.version", "key": "", "body": ""}}},
        stream={"resume": False},
    )  # fmt: skip
    results = parse(
        {
            "cli": printed.stdout,
            "cli_openapi": with_data.stdout,
            "backend": asyncapi(),
            "other_shapes": document(other_shapes, server="ws://127.0.0.1:9000/ws/stream/"),
        }
    )
    for name, result in results.items():
        assert result["version"] == "3.0.0", name
        assert result["errors"] == [], name
        assert result["valid"], name


#: Ways to break the document, and the diagnostic code the parser must give for each.
BREAKS = {
    "bad_action": (lambda d: d["operations"]["send_ping"].update(action="push"), "asyncapi-document-resolved"),
    "dangling_message": (
        lambda d: d["channels"]["stream"]["messages"].update(gone={"$ref": "#/components/messages/gone"}),
        "invalid-ref",
    ),
    "no_version": (lambda d: d["info"].pop("version"), "asyncapi-document-resolved"),
    "reply_nowhere": (
        lambda d: d["operations"]["send_ping"]["reply"].update(channel={"$ref": "#/channels/nowhere"}),
        "invalid-ref",
    ),
}


def test_a_broken_document_is_reported_invalid(parse: Any) -> None:
    docs = {}
    for name, (change, _) in BREAKS.items():
        docs[name] = doc = document(DEFAULT_MANIFEST)
        change(doc)
    results = parse(docs)
    for name, (_, code) in BREAKS.items():
        assert not results[name]["valid"], name
        assert code in {e["code"] for e in results[name]["errors"]}, (name, results[name]["errors"])
