"""The plugin SDK as installed: out-of-tree plugins built with pkg-config against the installed
header, and a plugin's kind checked by the compiler."""
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

@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    """The build installed into a folder of its own; the environment pkg-config needs there."""
    root = tmp_path_factory.mktemp("installed")
    subprocess.run(["make", "-C", str(BUILD), "install", f"DESTDIR={root}"], check=True,
                   capture_output=True, timeout=600)
    pc = next(root.rglob("sesame-plugin.pc"))
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

