"""plugins.path as a list of folders: an operator's own plugin in a folder of its own, beside
sesame's; a plugin found in two folders refused with both files named; what sesamed -t lists."""
import signal
import shutil
import subprocess

import pytest

from conftest import PLUGINS, SESAMED, route_file
from test_plugins import build_plugin

PASSWORDS = {"passwords.lua": route_file("passwords.lua")}
SHIPPED = f'plugins = {{ path = "{PLUGINS}" }}\n'
PLAIN = 'password = { scheme = "plain", accept = { "plain", "argon2id" } }\n'


def own_folder(s):
    """The test plugin "plain" (a hasher) built into a folder beside the configuration."""
    folder = build_plugin(s.dir, "plain")
    return folder.rename(s.dir / "acme")


def with_own_folder(sesamed, table, routes=None):
    """A sesamed to start, with "plain" in its folder acme and plugins = table, in which
    {plugins} is the shipped plugins' folder and {acme} that one."""
    s = sesamed(routes=routes, start=False, more=PLAIN)
    acme = own_folder(s)
    set_plugins(s, table.format(plugins=PLUGINS, acme=acme))
    return s, acme


def set_plugins(s, table):
    s.config.write_text(s.config.read_text().replace(SHIPPED, f"plugins = {table}\n"))


def check(s):
    return subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                          timeout=30)


def plugin_lines(out):
    """{name: file} from the lines sesamed -t prints for the plugins it loaded."""
    lines = [line for line in out.splitlines() if line.startswith("sesamed: plugin ")]
    return {line.split()[2]: line.rsplit(": ", 1)[1] for line in lines}


def test_an_own_plugin_loads_beside_the_shipped_ones(sesamed):
    # A relative folder resolves against the configuration's folder.
    s, acme = with_own_folder(sesamed, '{{ path = {{ "{plugins}", "acme" }} }}', PASSWORDS)
    r = check(s)
    assert r.returncode == 0, r.stderr
    files = plugin_lines(r.stdout)
    assert files["plain"] == f"{acme}/plain.so"
    assert files["argon2id"] == f"{PLUGINS}/argon2id.so"
    assert set(files) == {p.stem for p in PLUGINS.glob("*.so")} | {"plain"}
    assert "sesamed: plugin plain (hasher " in r.stdout
    s.start()
    assert s.post("/hash", json={"password": "pw"}).json() == {"hash": "plain$pw"}
    # A hash of the shipped argon2id, loaded from the other folder, verifies beside it.
    t = sesamed(routes=PASSWORDS)
    stored = t.post("/hash", json={"password": "pw"}).json()["hash"]
    assert s.post("/verify", json={"password": "pw", "stored": stored}).json()["ok"] is True


@pytest.mark.parametrize("load", [None, '{{ "argon2id", "plain" }}'])
def test_a_plugin_found_in_two_folders_names_both_files(sesamed, load):
    more = f", load = {load}" if load else ""
    s, acme = with_own_folder(sesamed, '{{ path = {{ "{plugins}", "{acme}" }}' + more + ' }}')
    shutil.copy(PLUGINS / "argon2id.so", acme / "argon2id.so")
    r = check(s)
    assert r.returncode == 1
    assert (f"{s.config}:2: plugins.path: plugin argon2id found twice: "
            f"{PLUGINS}/argon2id.so and {acme}/argon2id.so") in r.stderr
    assert "sesamed: plugin " not in r.stdout
    run = subprocess.run([SESAMED, "-f", "-c", str(s.config)], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 1 and "found twice" in run.stderr


def test_plugins_load_looks_in_every_folder(sesamed):
    s, acme = with_own_folder(
        sesamed, '{{ path = {{ "{acme}", "{plugins}" }}, load = {{ "argon2id", "plain" }} }}',
        PASSWORDS)
    r = check(s)
    assert r.returncode == 0, r.stderr
    assert plugin_lines(r.stdout) == {"argon2id": f"{PLUGINS}/argon2id.so",
                                      "plain": f"{acme}/plain.so"}
    # In the order load names them, whichever folder each came from.
    assert r.stdout.index("plugin argon2id") < r.stdout.index("plugin plain")
    s.start()
    assert s.post("/hash", json={"password": "x"}).json() == {"hash": "plain$x"}


def test_a_folder_is_read_as_a_name_not_a_pattern(sesamed):
    # Brackets and a star in a folder's name are only characters: its plugins are found, and
    # of its files only the visible NAME.so ones are taken.
    s = sesamed(start=False, more=PLAIN)
    acme = own_folder(s).rename(s.dir / "acme [1]*")
    (acme / "notes.txt").write_text("not a plugin\n")
    shutil.copy(acme / "plain.so", acme / ".hidden.so")
    set_plugins(s, f'{{ path = {{ "{PLUGINS}", "{acme}" }} }}')
    r = check(s)
    assert r.returncode == 0, r.stderr
    files = plugin_lines(r.stdout)
    assert files["plain"] == f"{acme}/plain.so"
    assert set(files) == {p.stem for p in PLUGINS.glob("*.so")} | {"plain"}


@pytest.mark.parametrize("table,message", [
    ('{{ path = {{ "{plugins}", "nowhere" }} }}',
     "plugins.path: {dir}/nowhere: No such file or directory"),
    ('{{ path = {{ "{plugins}", "sesame.lua" }} }}', "plugins.path: {dir}/sesame.lua: not a folder"),
    ('{{ path = {{ "{plugins}", 7 }} }}', "plugins.path: item 2: expected a folder"),
    ('{{ path = {{ "{plugins}", "{plugins}/" }} }}', "plugins.path: {plugins} is listed twice"),
    ('{{ path = {{}} }}', "plugins.path: an empty list: name one folder at least (the default is "),
    ('{{ path = true }}', "plugins.path: expected a folder or a list of folders"),
    ('{{ path = {{ "{plugins}" }}, load = {{ "argon2id", "nope" }} }}',
     "plugins.load: item 2: no nope.so in {plugins}"),
    ('{{ path = {{ "{plugins}", "{dir}" }}, load = {{ "nope" }} }}',
     "plugins.load: item 1: no nope.so in {plugins} or {dir}"),
    ('{{ path = {{ "{plugins}" }}, load = {{ "argon2id", "argon2id" }} }}',
     "plugins.load: argon2id is listed twice"),
])
def test_a_wrong_path_list_is_an_error_with_its_line(sesamed, table, message):
    s = sesamed(start=False)
    set_plugins(s, table.format(plugins=PLUGINS, dir=s.dir))
    r = check(s)
    assert r.returncode == 1
    assert f"{s.config}:2: {message.format(plugins=PLUGINS, dir=s.dir)}" in r.stderr


def test_a_reload_takes_a_new_folder_list(sesamed):
    s = sesamed(routes=PASSWORDS)
    assert s.post("/hash", json={"password": "pw"}).json()["hash"].startswith("$argon2id$")
    acme = own_folder(s)
    shipped = s.config.read_text()
    s.config.write_text(shipped.replace(SHIPPED, f'plugins = {{ path = {{ "{PLUGINS}", "acme" }} }}\n')
                        + PLAIN)
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded")
    assert s.post("/hash", json={"password": "pw"}).json() == {"hash": "plain$pw"}
    # A list that finds a plugin twice is refused: the running plugins keep serving.
    other = s.dir / "other"
    other.mkdir()
    shutil.copy(acme / "plain.so", other / "plain.so")
    s.config.write_text(s.config.read_text().replace('"acme" }', '"acme", "other" }'))
    s.signal(signal.SIGHUP)
    s.wait_log("reload failed")
    assert f"plugin plain found twice: {acme}/plain.so and {other}/plain.so" in s.log()
    assert s.post("/hash", json={"password": "pw"}).json() == {"hash": "plain$pw"}
    assert s.stop() == 0
