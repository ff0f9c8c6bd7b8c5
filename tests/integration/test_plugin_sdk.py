"""The plugin SDK as installed: out-of-tree plugins built with pkg-config against the installed
header, a plugin's kind checked by the compiler, and a validator on the core's MariaDB pool."""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import SESAMED, TOP

BUILD = Path(SESAMED).parent

HASHER = """
#include <sesame/plugin.h>
static int init(const struct sesame_host *h, struct sesame_config *c, void **s) { *s = 0; return 0; }
static void fini(void *s) { }
static int hash(void *s, const char *pw, size_t len, char *out, size_t outlen) { return -1; }
static int verify(void *s, const char *pw, size_t len, const char *stored) { return 0; }
static bool identify(void *s, const char *stored) { return false; }
static bool needs_rehash(void *s, const char *stored) { return false; }
%s("mine", "1", .init = init, .fini = fini, .hash = hash, .verify = verify,
   .identify = identify, .needs_rehash = needs_rehash);
"""

ROUTES = {"validate.lua": 'local sesame = require "sesame"\n'
          'sesame.route("POST", "/validate", function(req)\n'
          '  local v, err = sesame.validate("known_domain", req:json().email)\n'
          '  if not v then return 400, { result = "fail", error = err } end\n'
          '  return 200, { result = "success", email = v }\n'
          'end)\n'}


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    """The build installed into a folder of its own; the environment pkg-config needs there."""
    root = tmp_path_factory.mktemp("installed")
    subprocess.run(["make", "-C", str(BUILD), "install", f"DESTDIR={root}"], check=True,
                   capture_output=True, timeout=600)
    pc = next(root.rglob("sesame-plugin.pc"))
    # The folder is a sysroot, as in a cross build: pkg-config prefixes every path it gives
    # with it, so it holds the other libraries a plugin builds with too (MariaDB's, linked).
    for flag in subprocess.run(["pkg-config", "--cflags", "--libs-only-L", "libmariadb"],
                               capture_output=True, text=True, check=True).stdout.split():
        path = Path(flag[2:].rstrip("/"))
        if flag[:2] in ("-I", "-L") and not (root / path.relative_to("/")).exists():
            (root / path.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.relative_to("/")).symlink_to(path)
    env = dict(os.environ, PKG_CONFIG_PATH=str(pc.parent), PKG_CONFIG_SYSROOT_DIR=str(root))
    plugins = next(p for p in root.rglob("plugins") if (p / "argon2id.so").exists())
    return env, plugins


def cflags(env, *packages):
    out = subprocess.run(["pkg-config", "--cflags", *packages], env=env, check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def compile_plugin(env, source, out, *extra):
    return subprocess.run(["cc", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Werror",
                           "-Wno-unused-parameter", *cflags(env, "sesame-plugin"), *extra,
                           "-o", str(out), str(source)],
                          capture_output=True, text=True, timeout=120)


def docs_makefile():
    """The Makefile docs/plugins.md gives plugin developers, as written there."""
    doc = (TOP / "docs/plugins.md").read_text()
    after = doc.split("<!-- the Makefile of tests/integration/test_plugin_sdk.py -->\n", 1)[1]
    return after.split("```make\n", 1)[1].split("```\n", 1)[0]


def make_known_domain(env, tmp_path, folder):
    """Builds known_domain.so with the docs' Makefile in a folder of its own, as a plugin
    developer would, and installs it into folder; returns make's output."""
    src = tmp_path / "known_domain"
    src.mkdir()
    (src / "Makefile").write_text(docs_makefile())
    (src / "known_domain.c").write_text((TOP / "tests/plugin-sdk/known_domain.c").read_text())
    r = subprocess.run(["make", "-C", str(src)], capture_output=True, text=True, timeout=120,
                       env=dict(env, CFLAGS="-O2 -Wall -Wextra -Werror -Wno-unused-parameter"))
    assert r.returncode == 0, r.stdout + r.stderr
    i = subprocess.run(["make", "-C", str(src), "install", f"plugindir={folder}"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert i.returncode == 0, i.stdout + i.stderr
    return r.stdout


def test_the_docs_makefile_builds_against_the_installed_tree_only(sdk, tmp_path):
    env, installed = sdk
    folder = tmp_path / "plugins"
    out = make_known_domain(env, tmp_path, folder)
    # Nothing of the source tree: the header comes from the installed tree, through pkg-config.
    assert str(TOP) not in out
    assert f"-I{Path(env['PKG_CONFIG_SYSROOT_DIR'])}" in out
    assert (folder / "known_domain.so").exists()
    # Where make install puts it by default: beside sesame's own plugins (in the sysroot).
    plugindir = subprocess.run(["pkg-config", "--variable=plugindir", "sesame-plugin"],
                               env=env, capture_output=True, text=True, check=True).stdout
    assert Path(plugindir.strip()) == installed


def test_the_installed_header_is_found_by_pkg_config(sdk):
    env, _ = sdk
    flags = cflags(env, "sesame-plugin")
    assert any(Path(f[2:], "sesame", "plugin.h").exists() for f in flags if f.startswith("-I"))


@pytest.mark.parametrize("macro,compiles", [("SESAME_HASHER_PLUGIN", True),
                                            ("SESAME_VALIDATOR_PLUGIN", False),
                                            ("SESAME_STORAGE_PLUGIN", False)])
def test_a_plugin_of_another_kind_does_not_compile(sdk, tmp_path, macro, compiles):
    env, _ = sdk
    source = tmp_path / "mine.c"
    source.write_text(HASHER % macro)
    r = compile_plugin(env, source, tmp_path / "mine.so")
    assert (r.returncode == 0) == compiles, r.stderr
    if not compiles:
        kind = macro.split("_")[1].lower()
        # The compiler names the kind's table and the member it lacks.
        assert f"struct sesame_{kind}" in r.stderr and "hash" in r.stderr, r.stderr


def test_a_validator_reads_its_table_on_the_core_pool(sdk, sesamed, mariadb, tmp_path):
    env, installed = sdk
    folder = tmp_path / "plugins"
    folder.mkdir()
    for so in installed.glob("*.so"):
        (folder / so.name).symlink_to(so)
    make_known_domain(env, tmp_path, folder)
    # Its configuration is the top-level table of its name, as a shipped validator's is.
    storage = mariadb.storage(mariadb.database)
    mariadb.sql("CREATE TABLE accepted (name VARCHAR(253) PRIMARY KEY)", mariadb.database)
    mariadb.sql("INSERT INTO accepted VALUES ('example.org'), ('example.net')",
                mariadb.database)
    s = sesamed(routes=ROUTES, start=False, more=storage + (
        'known_domain = { table = "accepted", column = "name", colour = "blue" }\n'))
    s.config.write_text(s.config.read_text().replace(str(BUILD / "plugins"), str(folder)))
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "known_domain.colour: unknown key (plugin known_domain does not read it)" in r.stderr
    # With an error found before the plugins load, its table is not called unknown.
    s.config.write_text(s.config.read_text().replace("workers = 2", "workers = 0"))
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "server.workers: expected" in r.stderr
    assert "known_domain: unknown key" not in r.stderr
    s.config.write_text(s.config.read_text().replace("workers = 0", "workers = 2"))
    s.config.write_text(s.config.read_text().replace(', colour = "blue"', ''))
    s.start()
    s.wait_log("plugin known_domain: 2 known domains")
    r = s.post("/validate", json={"email": "alice@Example.ORG"})
    assert r.status_code == 200 and r.json()["email"] == "alice@Example.ORG"
    r = s.post("/validate", json={"email": "bob@example.com"})
    assert r.status_code == 400
    assert r.json()["error"] == "e-mail addresses of that domain are not accepted"


def test_a_validator_that_wants_the_pool_without_storage(sdk, sesamed, tmp_path):
    env, installed = sdk
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "argon2id.so").symlink_to(installed / "argon2id.so")
    make_known_domain(env, tmp_path, folder)
    s = sesamed(start=False)
    s.config.write_text(s.config.read_text().replace(str(BUILD / "plugins"), str(folder)))
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "plugin known_domain: needs the core's MariaDB pool (storage.mariadb)" in r.stderr
