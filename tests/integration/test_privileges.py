"""Privileges: started as root, the workers (and migrations, and sesamectl) run as server.user."""
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import SESAMED, TOP, Sesamed

SESAMECTL = str(Path(SESAMED).parent / "sesamectl")
NOBODY = pwd.getpwnam("nobody")
USERS = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text()}
SECRET = "privileges-tests-secret-0123456789abcdef"
APP = ('storage = { backend = "sqlite", sqlite = { path = "data/sesame.db" } }\n'
       f'jwt = {{ secret = "{SECRET}" }}\n')
AS_NOBODY = ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
             "--clear-groups", "--"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")


@pytest.fixture
def folder():
    """A folder the user nobody can reach (pytest's own tmp folders are root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="sesame-privs-"))
    d.chmod(0o755)
    made = []
    yield d, made
    for s in made:
        s.stop()
        s.log_text = s.log()
    shutil.rmtree(d)
    for s in made:
        for report in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert report not in s.log_text, s.log_text


def nobody_data(d):
    """The state folder, owned by nobody as an operator would make it."""
    data = d / "data"
    data.mkdir()
    os.chown(data, NOBODY.pw_uid, NOBODY.pw_gid)
    return data


def make(folder, config='user = "nobody"', more=APP, workers=2):
    top, made = folder
    d = top / f"s{len(made)}"
    d.mkdir()
    d.chmod(0o755)
    s = Sesamed(d, config, USERS if more else {}, workers, more)
    # The harness's own default (user = "root") must not be there for these tests.
    s.config.write_text(s.config.read_text().replace('user = "root", ', ""))
    made.append(s)
    return s


def start(s, prefix=(), umask=None):
    s.logf = open(s.log_path, "ab")
    s.proc = subprocess.Popen([*prefix, SESAMED, "-f", "-c", str(s.config)], stdout=s.logf,
                              stderr=s.logf, preexec_fn=(lambda: os.umask(umask))
                              if umask is not None else None)
    return s


def ids(pid):
    """The (real, effective, saved) uids and gids and the groups of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return (tuple(map(int, fields["Uid"][:3])), tuple(map(int, fields["Gid"][:3])),
            sorted(map(int, fields["Groups"])))


def owner_and_mode(path):
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def check(config, prefix=()):
    return subprocess.run([*prefix, SESAMED, "-t", "-c", str(config)], capture_output=True,
                          text=True, timeout=60)


def test_workers_run_as_the_user_and_files_are_private(folder):
    s = make(folder)
    data = nobody_data(s.dir)
    start(s, umask=0).wait_ready()
    assert ids(s.proc.pid)[0] == (0, 0, 0)
    workers = s.workers()
    assert len(workers) == 2
    nobody_groups = sorted(os.getgrouplist("nobody", NOBODY.pw_gid))
    for pid in workers:
        uids, gids, groups = ids(pid)
        assert uids == (NOBODY.pw_uid,) * 3
        assert gids == (NOBODY.pw_gid,) * 3
        assert groups == nobody_groups
        status = Path(f"/proc/{pid}/status").read_text()
        assert "NoNewPrivs:\t1" in status
    # End to end: register, log in, the token works.
    body = {"email": "alice@example.com", "username": "alice", "password": "correct horse"}
    assert s.post("/users/register", json=body).status_code == 200
    r = s.post("/users/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200
    me = s.get("/users/me", headers={"Authorization": "Bearer " + r.json()["access_token"]})
    assert me.json()["user"]["email"] == "alice@example.com"
    # The database and its WAL and shared-memory files: nobody's, 0600, despite umask 000.
    for name in ("sesame.db", "sesame.db-wal", "sesame.db-shm"):
        assert owner_and_mode(data / name) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o600), name
    assert s.stop() == 0


def test_root_without_a_user_refuses_to_start(folder):
    s = make(folder, config="", more="")
    start(s)
    assert s.proc.wait(30) != 0
    assert "server.user is not set" in s.log()
    r = check(s.config)
    assert r.returncode == 1
    assert f"{s.config}: sesamed runs as root and server.user is not set" in r.stderr
    assert 'server.user = "root"' in r.stderr


def test_root_on_purpose(folder):
    s = make(folder, config='user = "root"', more="")
    assert check(s.config).returncode == 0
    start(s).wait_ready()
    assert all(ids(pid)[0] == (0, 0, 0) for pid in s.workers())


@pytest.mark.parametrize("config,line,message", [
    ('\n  user = "no-such-user-here"', 2, 'server.user: no such user "no-such-user-here"'),
    ('user = "nobody",\n  group = "no-such-group-here"', 2,
     'server.group: no such group "no-such-group-here"'),
    ('\n  group = "nogroup"', 2, "server.group: needs server.user"),
])
def test_unknown_names_are_config_errors(folder, config, line, message):
    s = make(folder, config=config, more="")
    r = check(s.config)
    assert r.returncode == 1
    assert f"{s.config}:{line}: {message}" in r.stderr, r.stderr


def test_a_group_of_its_own(folder):
    s = make(folder, config='user = "nobody", group = "daemon"', more="")
    start(s).wait_ready()
    daemon_gid = 1
    for pid in s.workers():
        uids, gids, groups = ids(pid)
        assert uids == (NOBODY.pw_uid,) * 3 and gids == (daemon_gid,) * 3
        assert groups == sorted(os.getgrouplist("nobody", daemon_gid))


def test_not_root_ignores_another_user_with_a_warning(folder):
    s = make(folder, config='user = "daemon"', more="")
    r = check(s.config, AS_NOBODY)
    assert r.returncode == 0, r.stderr
    assert 'server.user: "daemon" is ignored' in r.stderr
    start(s, AS_NOBODY).wait_ready()
    assert 'server.user: "daemon" is ignored' in s.log()
    assert ids(s.proc.pid)[0] == (NOBODY.pw_uid,) * 3
    assert all(ids(pid)[0] == (NOBODY.pw_uid,) * 3 for pid in s.workers())
    # Naming the user it runs as is no mistake: no warning.
    s2 = make(folder, config='user = "nobody"', more="")
    r = check(s2.config, AS_NOBODY)
    assert r.returncode == 0 and "ignored" not in r.stderr


def test_a_start_whose_workers_cannot_change_user_fails(folder):
    s = make(folder, more="")
    # Root, but without the capability to change user: every worker fails the same way.
    start(s, ["setpriv", "--bounding-set=-setuid", "--"])
    assert s.proc.wait(60) == 1
    log = s.log()
    assert 'cannot change to user "nobody": setuid' in log
    assert "it cannot run as server.user; stopping" in log
    assert "respawning" not in log


def test_migration_as_root_leaves_the_files_to_the_user(folder):
    s = make(folder, more=APP.replace("data/", "data/m/"))
    data = nobody_data(s.dir)
    (data / "m").mkdir()
    os.chown(data / "m", NOBODY.pw_uid, NOBODY.pw_gid)
    start(s, umask=0o022).wait_ready()
    s.wait_log("applied migration")
    for f in (data / "m").iterdir():
        assert f.stat().st_uid == NOBODY.pw_uid, f
    assert owner_and_mode(data / "m" / "sesame.db") == (NOBODY.pw_uid, NOBODY.pw_gid, 0o600)


def test_sesamectl_as_root_works_as_the_user(folder):
    s = make(folder, more=APP.replace("sqlite = {", "migrate = false, sqlite = {"))
    data = nobody_data(s.dir)
    r = subprocess.run([SESAMECTL, "-c", str(s.config), "migrate"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(f.name for f in data.iterdir())[0] == "sesame.db"
    for f in data.iterdir():
        assert f.stat().st_uid == NOBODY.pw_uid, f
    assert owner_and_mode(data / "sesame.db") == (NOBODY.pw_uid, NOBODY.pw_gid, 0o600)
    # Its storage commands cannot write where only root may.
    os.chown(data, 0, 0)
    os.chmod(data, 0o755)
    (data / "sesame.db").unlink()
    r = subprocess.run([SESAMECTL, "-c", str(s.config), "migrate"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert not (data / "sesame.db").exists()


def test_sesamectl_not_root_opens_the_audit_log_only_to_emit(folder):
    s = make(folder, more=APP + 'events = { audit_log = "audit.log" }\n')
    nobody_data(s.dir)
    audit = s.dir / "audit.log"
    audit.touch()
    audit.chmod(0o600)  # root's alone, as an operator may keep it

    def ctl(*args, prefix=(), stdin=None):
        return subprocess.run([*prefix, SESAMECTL, "-c", str(s.config), *args], input=stdin,
                              capture_output=True, text=True, timeout=60)

    def disabled():
        return json.loads(ctl("user", "show", "ann@example.com", "--json").stdout)["disabled"]

    r = ctl("user", "add", "ann@example.com", "--username", "ann", stdin="correct horse\n")
    assert r.returncode == 0, r.stderr
    # As the user: the commands that only read never touch the audit log.
    r = ctl("user", "list", prefix=AS_NOBODY)
    assert r.returncode == 0, r.stderr
    assert "ann@example.com" in r.stdout
    assert ctl("user", "show", "ann@example.com", prefix=AS_NOBODY).returncode == 0
    # A command that emits needs it, and says so; the user stays enabled.
    r = ctl("user", "disable", "ann@example.com", prefix=AS_NOBODY)
    assert r.returncode == 1
    assert f"cannot open audit log {audit}: Permission denied" in r.stderr
    assert disabled() is False
    # As root it opens the log before changing to the user, as a worker does.
    assert ctl("user", "disable", "ann@example.com").returncode == 0
    assert '"event":"disabled"' in audit.read_text()
    # sesamed -t, as that user, still reports a log it could not write.
    r = check(s.config, AS_NOBODY)
    assert r.returncode == 1
    assert "events.audit_log: cannot open" in r.stderr


def test_sesamectl_as_root_without_a_user_refuses(folder):
    s = make(folder, config="", more=APP.replace("sqlite = {", "migrate = false, sqlite = {"))
    data = nobody_data(s.dir)
    r = subprocess.run([SESAMECTL, "-c", str(s.config), "migrate"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "sesamectl runs as root and server.user is not set" in r.stderr
    assert list(data.iterdir()) == []


def test_a_planted_symlink_is_not_followed(folder):
    s = make(folder, more=APP.replace("sqlite = {", "migrate = false, sqlite = {"))
    data = nobody_data(s.dir)
    victim = data / "elsewhere.db"  # somewhere the user may write
    (data / "sesame.db").symlink_to(victim)
    r = subprocess.run([SESAMECTL, "-c", str(s.config), "migrate"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert not victim.exists()
    assert (data / "sesame.db").is_symlink()
