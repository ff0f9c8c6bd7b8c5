"""A forgotten password across nodes: the reset asked for and used through one sesamed node,
then seen from the other: the old session refused, the new password accepted. Mail goes to
a real SMTP server on loopback (tests/integration/receivers.py's mailbox)."""
import shutil
import sys

from conftest import TOP, Sesamed, bearer, check_logs, new_user, wait_for

sys.path.insert(0, str(TOP / "tests" / "integration"))
import receivers  # noqa: E402  (beside the integration tests)


def mail_pair(galera, folder, database, mailbox):
    """Two sesamed nodes on database with the mail table and the shipped templates."""
    extra = (f'mail = {{ url = "{mailbox.url}", from = "sesame@example.com", timeout = 5 }}\n'
             'accounts = { link_base = "https://app.example.com" }\n'
             'limits = { register = false, login = false, forgot = false, reset = false }\n')
    nodes = []
    for i, name in enumerate(("m1", "m2")):
        node = Sesamed(folder / name, name, galera, i, database, extra)
        shutil.copytree(TOP / "etc/sesame/mail", node.dir / "mail")
        nodes.append(node.start())
    return nodes


def test_a_reset_on_one_node_ends_the_sessions_on_the_other(healthy, tmp_path):
    g = healthy.galera
    g.sql("CREATE DATABASE reset_flow")
    mailbox = receivers.Mailbox().start()
    a, b = mail_pair(g, tmp_path, "reset_flow", mailbox)
    try:
        for n in (a, b):
            n.wait_ready()
        user = new_user()
        assert a.post("/users/register", json=user).status_code == 200
        session = b.post("/users/login", json=user).json()
        assert b.get("/users/me", headers=bearer(session["access_token"])).status_code == 200

        assert a.post("/users/password/forgot", json={"email": user["email"]}).status_code == 200
        mail = mailbox.wait(to=user["email"], count=2)[1]
        assert mail["message"]["Subject"] == "Reset your password"
        r = a.post("/users/password/reset",
                   json={"token": receivers.token_in(mail), "password": "new password!"})
        assert r.status_code == 200, r.text

        # jwt.revocation_refresh = 1: node B's workers refuse the old session within it.
        assert wait_for(lambda: all(
            b.get("/users/me", headers={**bearer(session["access_token"]),
                                        "Connection": "close"}).status_code == 401
            for _ in range(4)), 3, 0.05)
        r = b.post("/token/refresh", headers=bearer(session["refresh_token"]))
        assert r.status_code == 401
        assert b.post("/users/login", json=user).status_code == 401
        r = b.post("/users/login", json={"email": user["email"], "password": "new password!"})
        assert r.status_code == 200
        assert b.get("/users/me", headers=bearer(r.json()["access_token"])).status_code == 200
    finally:
        codes = [n.stop() for n in (a, b)]
        mailbox.stop()
    assert codes == [0, 0], [n.log()[-3000:] for n in (a, b)]
    check_logs((a, b))
    g.sql("DROP DATABASE reset_flow")
