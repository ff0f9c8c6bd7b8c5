"""make install: the layout, the installed sesamed checking the installed configuration, the man
pages rendering without a warning, and sesame.lua(5) listing exactly the keys sesamed reads."""
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import SESAMED, TOP

BUILD = Path(SESAMED).parent
PLUGINS = ("argon2id", "pbkdf2_sha256", "mariadb", "sqlite", "email", "password", "username")
ROUTES = ("accounts.lua", "auth.lua", "info.lua", "jwks.lua", "users.lua")
SHIPPED = {"lua": ("replies.lua", "account_mail.lua"),
           "mail": ("verify.txt", "reset.txt", "email_change.txt", "email_changed.txt", "exists.txt",
                    "email_taken.txt")}
MAN = ("man8/sesamed.8", "man8/sesamectl.8", "man5/sesame.lua.5")
DOCS = ("README.md", "operations.md", "lua-api.md", "plugins.md")
DIRS = ("sbindir", "pkglibdir", "sysconfdir", "includedir", "pkgconfigdir", "pkgdatadir",
        "docdir", "mandir")


def make_vars(names):
    """The build's installation folders, as its Makefile expands them."""
    rule = "print:\n\t@echo " + " ".join(f"$({n})" for n in names) + "\n"
    out = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(BUILD), "-f", "Makefile",
                          "-f", "-", "print"], input=rule, capture_output=True, text=True,
                         check=True, timeout=60)
    return dict(zip(names, out.stdout.split()))


def make(target, root):
    r = subprocess.run(["make", "-C", str(BUILD), target, f"DESTDIR={root}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    make("install", root)
    dirs = {k: Path(str(root) + v) for k, v in make_vars(DIRS).items()}
    return root, dirs


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_is_in_its_place(installed):
    root, d = installed
    for prog in ("sesamed", "sesamectl"):
        assert mode(d["sbindir"] / prog) == 0o755, prog
    for name in PLUGINS:
        assert mode(d["pkglibdir"] / "plugins" / f"{name}.so") & 0o111, name
    conf = d["sysconfdir"] / "sesame"
    assert (conf / "sesame.lua").read_text() == (TOP / "etc/sesame/sesame.lua").read_text()
    assert (conf / "sesame.lua.default").read_bytes() == (conf / "sesame.lua").read_bytes()
    for name in ROUTES:
        assert (conf / "routes" / name).read_text() == \
            (TOP / "etc/sesame/routes" / name).read_text()
    for folder, names in SHIPPED.items():
        for name in names:
            assert (conf / folder / name).read_text() == \
                (TOP / "etc/sesame" / folder / name).read_text()
    for name in SHIPPED["mail"]:
        assert (conf / "mail" / f"{name}.default").read_bytes() == \
            (conf / "mail" / name).read_bytes()
    assert (d["includedir"] / "sesame" / "plugin.h").exists()
    assert "Name: sesame-plugin" in (d["pkgconfigdir"] / "sesame-plugin.pc").read_text()
    for backend in ("mariadb", "sqlite"):
        shipped = sorted(p.name for p in (TOP / "scripts/schema" / backend).glob("*.sql"))
        got = sorted(p.name for p in (d["pkgdatadir"] / "schema" / backend).iterdir())
        assert got == shipped and shipped, backend
    for name in DOCS:
        assert (d["docdir"] / name).exists(), name
    for page in MAN:
        assert (d["mandir"] / page).exists(), page
    for shipped in ("etc/nginx/sesame.conf", "etc/haproxy/sesame.cfg"):
        assert (d["docdir"] / "examples" / Path(shipped).name).read_text() == \
            (TOP / shipped).read_text()


def test_modes_are_sane(installed):
    root, _ = installed
    for p in root.rglob("*"):
        if p.is_symlink():
            continue
        m = mode(p)
        assert not m & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH), f"{p}: {oct(m)}"
        if p.is_file() and p.suffix in (".lua", ".sql", ".md", ".h", ".pc", ".8", ".5",
                                        ".default", ".conf", ".cfg"):
            assert m == 0o644, f"{p}: {oct(m)}"


def test_the_installed_sesamed_accepts_the_installed_configuration(installed, tmp_path):
    root, d = installed
    conf = d["sysconfdir"] / "sesame"
    key = tmp_path / "jwt.key"
    r = subprocess.run([str(d["sbindir"] / "sesamectl"), "keygen", str(key)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # The shipped file, with what this machine has instead of a real deployment's values: the
    # plugins where DESTDIR put them, a key, a database in the test's folder, and root (the
    # suite's user) as the workers' account. Beside the shipped one, so its routes are found.
    test_conf = conf / "test.lua"
    test_conf.write_text((conf / "sesame.lua").read_text() + f"""
server.user = "root"
plugins = {{ path = "{d['pkglibdir'] / 'plugins'}" }}
jwt = {{ secret_file = "{key}" }}
storage = {{ backend = "sqlite", sqlite = {{ path = "{tmp_path / 'sesame.db'}" }} }}
mail = {{ url = "smtp://127.0.0.1:25", from = "sesame@example.com" }}
""")
    try:
        r = subprocess.run([str(d["sbindir"] / "sesamed"), "-t", "-c", str(test_conf)],
                           capture_output=True, text=True, timeout=60)
    finally:
        test_conf.unlink()
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"({len(ROUTES)} route scripts)" in r.stdout
    # Mail is on, so the installed templates went through the check; the shipped link_base
    # is a developer's.
    assert "accounts.link_base: the links in mails point to http://127.0.0.1:8080" in r.stderr


def test_the_installed_templates_are_checked(installed, tmp_path):
    root, d = installed
    conf = d["sysconfdir"] / "sesame"
    test_conf = conf / "test.lua"
    test_conf.write_text(f"""server = {{ user = "root" }}
plugins = {{ path = "{d['pkglibdir'] / 'plugins'}" }}
routes = {{}}
mail = {{ url = "smtp://127.0.0.1:25", from = "sesame@example.com" }}
accounts = {{ link_base = "https://app.example.com/account" }}
""")
    reset = conf / "mail" / "reset.txt"
    shipped = reset.read_bytes()
    reset.write_text("Your reset link: {link}\n")  # no Subject: line
    try:
        r = subprocess.run([str(d["sbindir"] / "sesamed"), "-t", "-c", str(test_conf)],
                           capture_output=True, text=True, timeout=60)
    finally:
        test_conf.unlink()
        reset.write_bytes(shipped)
    assert r.returncode == 1
    assert f"accounts.mail_dir: template {reset}: expected a Subject: line" in r.stderr, r.stderr


@pytest.mark.parametrize("page", MAN)
def test_each_man_page_renders_without_a_warning(installed, page):
    path = installed[1]["mandir"] / page
    r = subprocess.run(["groff", "-ww", "-z", "-man", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", str(path)],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MANWIDTH="80"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert path.name.split(".")[0].upper() in r.stdout


def test_the_configuration_page_lists_exactly_the_keys_sesamed_reads():
    r = subprocess.run([str(TOP / "scripts/man-config"), "--check", SESAMED],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_installing_again_keeps_the_operators_configuration(tmp_path):
    root = tmp_path / "root"
    make("install", root)
    conf = Path(str(root) + make_vars(["sysconfdir"])["sysconfdir"]) / "sesame"
    own = (conf / "sesame.lua").read_text() + 'server.workers = 1\n'
    (conf / "sesame.lua").write_text(own)
    (conf / "sesame.lua.default").write_text("-- an older release's\n")
    wording = "Subject: Bitte bestätigen Sie Ihre Adresse\n\n{link}\n"
    (conf / "mail/verify.txt").write_text(wording)
    (conf / "mail/verify.txt.default").write_text("Subject: an older release's\n\n")
    (conf / "mail/reset.txt").unlink()
    make("install", root)
    assert (conf / "sesame.lua").read_text() == own
    assert (conf / "sesame.lua.default").read_text() == \
        (TOP / "etc/sesame/sesame.lua").read_text()
    assert (conf / "mail/verify.txt").read_text() == wording
    for name in ("verify.txt.default", "reset.txt", "reset.txt.default"):
        assert (conf / "mail" / name).read_text() == \
            (TOP / "etc/sesame/mail" / name.removesuffix(".default")).read_text(), name
    make("uninstall", root)
    left = sorted(p for p in root.rglob("*") if p.is_file())
    assert left == [conf / "mail/verify.txt", conf / "sesame.lua"]
