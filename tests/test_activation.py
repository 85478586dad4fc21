"""Activation against real local stand-ins: an HTTP receiver that fails on demand, a folder, S3 (moto's server)
and a PostgreSQL cluster."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cai import activation, cli, destinations, engine, instances, segments, store
from cai.errors import CaiError, ValidationError
from tests.conftest import ROOT

SECRET = "hook-signing-secret-42"
HIGH = segments.suggested_name(instances.TUTORIAL_INSTANCE, "high")
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-cookie-secret",
        "client_id": "customer-ai", "client_secret": "not-a-real-secret",
        "server_metadata_url": "https://login.example.com/.well-known/openid-configuration"}
EDITOR = "boss@example.com"


class Receiver(ThreadingHTTPServer):
    """Records every request; ``plan`` says how to answer the next ones ("500", "400", "timeout", "slow", "ok").
    Like a real receiver it applies a batch once per idempotency key, even when the sender retries it."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan: list[str] = []
        self.requests: list[dict] = []
        self.applied: dict[str, dict] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Receiver = self.server
        behaviour = server.plan.pop(0) if server.plan else "ok"
        server.requests.append({"headers": dict(self.headers), "body": body, "behaviour": behaviour})
        if behaviour in ("500", "400"):
            self.send_response(int(behaviour))
            self.end_headers()
            self.wfile.write(b"refused on purpose")
            return
        # "timeout": the batch arrives and is applied, but the answer comes after the sender gave up.
        server.applied.setdefault(self.headers["Idempotency-Key"], json.loads(body))
        time.sleep({"timeout": 1.0, "slow": 0.2}.get(behaviour, 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def high(trained_db) -> str:
    definition = instances.get_instance(trained_db, instances.TUTORIAL_INSTANCE).definition
    rule = segments.bucket_rule(instances.TUTORIAL_INSTANCE, "high", definition.low_threshold,
                                definition.high_threshold)
    return segments.create_segment(trained_db, HIGH, rule)["name"]


@pytest.fixture
def hooks(trained_db, receiver, monkeypatch) -> destinations.Destination:
    monkeypatch.setenv("CAI_DESTINATION_HOOKS_SECRET", SECRET)
    return destinations.create_destination(trained_db, destinations.Destination(
        "hooks", "webhook", receiver.url, {"batch_size": 100, "timeout_s": 0.5, "backoff_s": 0.01, "attempts": 3}))


def _crmids(db: Path, segment: str) -> set[str]:
    """The segment's members' CRMIDs, read independently of the activation code."""
    frame = segments.members(db, segment, limit=1_000_000)
    with store.connect(db) as con:
        crmids = con.execute("SELECT profile_id, min(id_value) AS crmid FROM identities WHERE namespace = 'CRMID' "
                             "GROUP BY profile_id").df()
    return set(frame.merge(crmids, on="profile_id")["crmid"])


def _applied(receiver: Receiver, key: str) -> list[str]:
    return [item["identity"] for body in receiver.applied.values() for item in body[key]]


def test_webhook_delivers_every_member_signed_and_once(trained_db, high, hooks, receiver):
    activation.activate(trained_db, high, "hooks", columns=("score", "bucket"))
    [result] = activation.deliver_pending(trained_db, segment=high)

    expected = _crmids(trained_db, high)
    assert result.status == activation.SUCCESS and result.members == len(expected) > 100
    assert sorted(_applied(receiver, "added")) == sorted(expected)
    for request in receiver.requests:
        signature = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request["headers"][destinations.SIGNATURE_HEADER], signature)
        assert json.loads(request["body"])["added"][0].keys() == {"identity", "score", "bucket"}
    assert len(receiver.requests) == -(-len(expected) // 100)

    again = activation.deliver_pending(trained_db, segment=high)
    assert [r.status for r in again] == ["up to date"] and len(receiver.requests) == -(-len(expected) // 100)


def test_a_500_and_a_timeout_are_retried_without_duplicates_and_a_400_is_not(trained_db, high, hooks, receiver,
                                                                              monkeypatch):
    receiver.plan = ["500", "ok", "timeout", "slow"]
    activation.activate(trained_db, high, "hooks")
    [result] = activation.deliver_pending(trained_db, segment=high)

    assert result.status == activation.SUCCESS
    added = _applied(receiver, "added")
    assert len(added) == len(set(added)) and set(added) == _crmids(trained_db, high)
    keys = [r["headers"][destinations.IDEMPOTENCY_HEADER] for r in receiver.requests]
    assert keys[0] == keys[1] and keys[2] == keys[3], "a retry resends the same batch under the same key"

    refused = destinations.create_destination(trained_db, destinations.Destination(
        "strict", "webhook", receiver.url, {"attempts": 3, "backoff_s": 0.01}))
    monkeypatch.setenv("CAI_DESTINATION_STRICT_SECRET", SECRET)
    receiver.plan, before = ["400"], len(receiver.requests)
    activation.activate(trained_db, high, refused.name)
    [failed] = [r for r in activation.deliver_pending(trained_db, segment=high) if r.destination == "strict"]
    assert failed.status == activation.FAILED and "HTTP 400" in failed.error
    assert len(receiver.requests) == before + 1, "a 4xx is never retried"


def test_a_failed_delivery_is_retried_by_run_due_sending_only_the_rest(trained_db, high, hooks, receiver, capsys):
    receiver.plan = ["ok", "500", "500", "500"]
    activation.activate(trained_db, high, "hooks")
    [failed] = activation.deliver_pending(trained_db, segment=high)
    assert failed.status == activation.FAILED and "after 3 attempts" in failed.error
    shown = activation.list_activations(trained_db, high).iloc[0]
    assert shown["last_status"] == activation.FAILED and shown["added"] == 100

    assert cli.main(["--db", str(trained_db), "run-due"]) == 0
    assert "hooks (run" in capsys.readouterr().out
    added = _applied(receiver, "added")
    assert len(added) == len(set(added)) and set(added) == _crmids(trained_db, high)
    history = activation.delivery_history(trained_db, high)
    assert history["status"].tolist() == [activation.SUCCESS] and history["attempts"].tolist() == [2]


def _rows(pg_url: str) -> pd.DataFrame:
    con = destinations.postgres_connection(pg_url, None)
    try:
        return con.execute("SELECT * FROM pg.public.audience").df()
    finally:
        con.close()


def test_a_new_run_delivers_exactly_the_diff_to_webhooks_and_tables(trained_db, high, hooks, receiver, pg_url,
                                                                    monkeypatch):
    # The address is stored without its password, which comes from the destination's secret, as in production.
    address = urlsplit(pg_url)
    monkeypatch.setenv(destinations.secret_variable("warehouse", "password"), address.password or "")
    without_password = address._replace(netloc=address.netloc.replace(f":{address.password}@", "@")).geturl()
    destinations.create_destination(trained_db, destinations.Destination("warehouse", "table", without_password,
                                                                         {"table": "audience"}))
    activation.activate(trained_db, high, "hooks", identity="email_sha256")
    activation.activate(trained_db, high, "warehouse", columns=("score",))
    first = activation.deliver_pending(trained_db, segment=high)
    assert [r.status for r in first] == [activation.SUCCESS] * 2, [r.error for r in first]
    table = _rows(pg_url)
    assert set(table["identity"]) == _crmids(trained_db, high) and table["bucket"].isna().all()
    assert table["score"].ge(75).all()
    before = set(_applied(receiver, "added"))
    receiver.applied.clear()

    # A run on a different score date changes the scores; its end delivers both activations again by itself.
    as_of = dt.date.fromisoformat(str(instances.run_history(trained_db, instances.TUTORIAL_INSTANCE)["as_of"]
                                      .iloc[0])[:10])
    result = engine.run_instance(trained_db, instances.TUTORIAL_INSTANCE, as_of=as_of - dt.timedelta(days=14))
    assert result.error is None

    with store.connect(trained_db) as con:
        emails = con.execute("SELECT profile_id, sha256(lower(trim(arg_min(id_value, (NOT is_primary, id_value))))) "
                             "AS hashed FROM identities WHERE namespace = 'Email' GROUP BY profile_id").df()
    after = set(segments.members(trained_db, high, limit=1_000_000).merge(emails, on="profile_id")["hashed"])
    added, removed = set(_applied(receiver, "added")), set(_applied(receiver, "removed"))
    assert added and removed
    assert added == after - before and removed == before - after
    assert all(len(value) == 64 for value in added)

    latest = activation.list_activations(trained_db, high).set_index("destination")
    assert (latest["last_status"] == activation.SUCCESS).all() and (latest["last_run"] == result.run_id).all()
    assert set(_rows(pg_url)["identity"]) == _crmids(trained_db, high)
    assert 0 < latest.loc["warehouse", "added"] + latest.loc["warehouse", "removed"] < len(table)


def test_folder_delivery_is_a_full_snapshot_with_a_manifest(trained_db, high, tmp_path):
    destinations.create_destination(trained_db, destinations.Destination(
        "share", "folder", str(tmp_path / "share"), {"format": "parquet"}))
    activation.activate(trained_db, high, "share", columns=("score", "probability"))
    [result] = activation.deliver_pending(trained_db, segment=high)

    folder = Path(result.location)
    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / manifest["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    frame = pd.read_parquet(folder / manifest["file"])
    assert set(frame["crmid"]) == _crmids(trained_db, high) and manifest["members"] == len(frame)
    assert list(frame.columns) == ["crmid", "score", "probability"]
    assert json.loads((folder.parent / "latest.json").read_text())["folder"] == folder.name


def test_a_delivery_killed_before_its_manifest_leaves_nothing_visible_and_is_redone(trained_db, high, tmp_path):
    share = tmp_path / "share"
    destinations.create_destination(trained_db, destinations.Destination("share", "folder", str(share)))
    activation.activate(trained_db, high, "share")
    store.release(trained_db)
    # The child dies the moment it opens the manifest: the members file is complete, its manifest never written.
    code = (
        "import os, signal, sys\n"
        "from fsspec.implementations import local\n"
        "opening = local.LocalFileSystem._open\n"
        "def dying(self, path, *args, **kwargs):\n"
        "    if str(path).endswith('manifest.json'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return opening(self, path, *args, **kwargs)\n"
        "local.LocalFileSystem._open = dying\n"
        "from cai import activation\n"
        "activation.deliver_pending(sys.argv[1])\n"
    )
    child = subprocess.run([sys.executable, "-c", code, str(trained_db)], cwd=ROOT, timeout=120)
    assert child.returncode == -signal.SIGKILL

    [members_file] = share.rglob("members.csv")
    assert not list(share.rglob("manifest.json")) and not list(share.rglob("latest.json"))
    assert activation.list_activations(trained_db, high).iloc[0]["last_status"] == activation.SENDING

    [result] = activation.deliver_pending(trained_db, segment=high)
    assert result.status == activation.SUCCESS
    manifest = json.loads((members_file.parent / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(members_file.read_bytes()).hexdigest()
    assert set(pd.read_csv(members_file, dtype=str)["crmid"]) == _crmids(trained_db, high)


def test_s3_delivery_through_an_s3_compatible_server(trained_db, high, monkeypatch):
    from moto.server import ThreadedMotoServer
    import s3fs

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server._server.server_port}"
        monkeypatch.setenv("CAI_DESTINATION_LAKE_KEY", "test-key")
        monkeypatch.setenv("CAI_DESTINATION_LAKE_SECRET", "test-secret")
        fs = s3fs.S3FileSystem(key="test-key", secret="test-secret", endpoint_url=endpoint)
        fs.mkdir("audiences")
        destinations.create_destination(trained_db, destinations.Destination(
            "lake", "s3", "s3://audiences/cai", {"endpoint_url": endpoint}))
        activation.activate(trained_db, high, "lake", identity="crmid")
        [result] = activation.deliver_pending(trained_db, segment=high)
        assert result.status == activation.SUCCESS, result.error

        folder = result.location.removeprefix("s3://")
        fs.invalidate_cache()
        manifest = json.loads(fs.cat(f"{folder}/manifest.json"))
        data = fs.cat(f"{folder}/{manifest['file']}")
        assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
        with fs.open(f"{folder}/{manifest['file']}") as handle:
            assert set(pd.read_csv(handle, dtype=str)["crmid"]) == _crmids(trained_db, high)
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_secrets_stay_out_of_the_store_and_passwords_in_addresses_are_refused(trained_db, high, hooks):
    with pytest.raises(ValidationError, match="secrets.toml"):
        destinations.create_destination(trained_db, destinations.Destination(
            "leaky", "table", "postgresql://ana:hunter2@db.example.com/crm"))
    activation.activate(trained_db, high, "hooks")
    activation.deliver_pending(trained_db, segment=high)
    store.release(trained_db)
    assert SECRET.encode() not in trained_db.read_bytes()
    assert b"hunter2" not in trained_db.read_bytes()


def test_secrets_file_is_read_when_no_variable_is_set(tmp_path, monkeypatch):
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[cai.destinations.crm]\npassword = "from-file"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAI_DESTINATION_CRM_PASSWORD", raising=False)
    assert destinations.secret("crm", "password") == "from-file"
    monkeypatch.setenv("CAI_DESTINATION_CRM_PASSWORD", "from-env")
    assert destinations.secret("crm", "password") == "from-env"
    with pytest.raises(CaiError, match="set CAI_DESTINATION_MY_HOOK_SECRET"):
        destinations.post_batch(destinations.Destination("my-hook", "webhook", "http://127.0.0.1:9/"), b"{}")


def test_cli_activates_to_a_webhook_and_fails_loudly(trained_db, high, receiver, monkeypatch, capsys):
    monkeypatch.setenv("CAI_DESTINATION_HOOKS_SECRET", SECRET)
    db = ["--db", str(trained_db)]
    assert cli.main([*db, "destinations", "create", "--name", "hooks", "--webhook", receiver.url,
                     "--timeout", "0.5"]) == 0
    assert cli.main([*db, "segments", "activate", high, "--destination", "hooks", "--identity", "email",
                     "--columns", "score"]) == 0
    out = capsys.readouterr().out
    assert f"{high} -> hooks" in out and "success" in out
    assert "@" in _applied(receiver, "added")[0]

    assert cli.main([*db, "destinations", "create", "--name", "down", "--webhook", "http://127.0.0.1:9/x"]) == 0
    monkeypatch.setenv("CAI_DESTINATION_DOWN_SECRET", SECRET)
    monkeypatch.setattr(destinations, "DEFAULT_BACKOFF_S", 0.01)
    assert cli.main([*db, "segments", "activate", high, "--destination", "down"]) == 1
    assert "could not connect" in capsys.readouterr().err
    assert cli.main([*db, "activations", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {row["destination"]: row["last_status"] for row in listed} == {"hooks": "success", "down": "failed"}


def _segments_page(user: dict | None = None) -> AppTest:
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    if user is not None:
        app.secrets["auth"] = AUTH
        app.secrets["cai"] = {"editors": [EDITOR]}
        for key, value in user.items():
            app.user[key] = value
    return app.run().switch_page("app_pages/segments.py").run()


def _frame_with(app: AppTest, column: str) -> pd.DataFrame:
    return next(frame.value for frame in app.dataframe if column in frame.value.columns)


def test_segments_page_activates_a_segment_and_shows_its_deliveries(trained_db, high, tmp_path):
    destinations.create_destination(trained_db, destinations.Destination("share", "folder", str(tmp_path / "out")))
    app = _segments_page()
    assert not app.exception
    assert any("not sent anywhere yet" in info.value for info in app.info)

    app.selectbox(key="activation_identity").set_value("email_sha256")
    app.button(key="FormSubmitter:activation_form-Activate").click().run()
    assert not app.exception
    # Escaped as Markdown: the line quotes the segment's and the destination's names.
    assert any(f"{high} -> share" in message.value.replace("\\", "") and "success" in message.value
               for message in app.success)

    app.run()
    shown = _frame_with(app, "last_status")
    assert shown.loc[0, "destination"] == "share" and shown.loc[0, "last_status"] == activation.SUCCESS
    assert shown.loc[0, "identity"] == "email_sha256" and "@" not in shown.to_string()
    assert _frame_with(app, "attempts")["members"].iloc[0] == len(_crmids(trained_db, high))


def test_viewers_see_activations_but_cannot_activate(trained_db, high, tmp_path):
    destinations.create_destination(trained_db, destinations.Destination("share", "folder", str(tmp_path / "out")))
    activation.activate(trained_db, high, "share")
    activation.deliver_pending(trained_db, segment=high)
    app = _segments_page({"is_logged_in": True, "email": "analyst@example.com"})
    assert not app.exception
    assert _frame_with(app, "last_status").loc[0, "last_status"] == activation.SUCCESS
    assert app.button(key="FormSubmitter:activation_form-Activate").disabled
    assert app.button(key="activation_deliver").disabled
    assert not [expander for expander in app.expander if expander.label == "New destination"]


def test_a_csv_snapshot_delivers_no_spreadsheet_formula_from_the_data(tmp_path):
    share = destinations.Destination("share", "folder", str(tmp_path / "share"))
    members = pd.DataFrame({"identity": ['=HYPERLINK("http://evil.test","win")', "+1-555-0100", "C-1"],
                            "score": [91.0, 80.0, 77.0]})
    location = destinations.write_snapshot(share, "high", 1, members, {"segment": "high", "run_id": 1})
    delivered = pd.read_csv(Path(location) / "members.csv", dtype=str)
    assert delivered["identity"].tolist() == ['\'=HYPERLINK("http://evil.test","win")', "'+1-555-0100", "C-1"]
