"""RS and ES keys: sesamectl keygen, key pairs in jwt, kid, JWKS, rotation and forged tokens."""
import base64
import hashlib
import hmac
import json
import signal
import stat
import subprocess
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import SESAMED, TOP, wait_for

SESAMECTL = str(Path(SESAMED).parent / "sesamectl")
ROUTES = {name: (TOP / "etc/sesame/routes" / name).read_text()
          for name in ("users.lua", "auth.lua", "jwks.lua")}
FIELD = {"ES256": 32, "ES384": 48, "ES512": 66}
CURVES = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
ORDERS = {"ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551}


def ctl(*args):
    return subprocess.run([SESAMECTL, *args], capture_output=True, text=True, timeout=120)


def keygen(folder, alg, name="jwt", bits="2048"):
    """A key pair written by sesamectl keygen: (private path, public path)."""
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    extra = ["--bits", bits] if alg.startswith("RS") and bits else []
    r = ctl("keygen", "-a", alg, *extra, str(private), str(public))
    assert r.returncode == 0, r.stderr
    return private, public


def write_pem(path, key, private=True):
    if private:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    else:
        data = key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    path.write_bytes(data)
    return path


def private_key(path):
    return serialization.load_pem_private_key(path.read_bytes(), None)


def jwt_config(alg, previous=(), extra=""):
    prev = ", ".join(f'"{p}"' for p in previous)
    return (f'jwt = {{ algorithm = "{alg}", private_key_file = "jwt.pem", '
            f'public_key_file = "jwt.pub", previous_keys = {{ {prev} }}, {extra} }}\n')


def start(sesamed, mariadb, alg, previous=(), keys=True, workers=2):
    s = sesamed(routes=ROUTES, more=mariadb.storage(mariadb.database) + jwt_config(alg, previous),
                start=False, workers=workers)
    s.db = mariadb
    if keys:
        keygen(s.dir, alg)
    return s.start()


def register(s, email="ann@example.com"):
    r = s.post("/users/register", json={"email": email, "username": "ann",
                                        "password": "correct horse"})
    assert r.status_code == 200, r.text
    return r.json()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def jwks(s):
    r = s.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, max-age=300"
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def b64(data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(jwk):
    """RFC 7638, computed independently of sesame."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    text = json.dumps({m: jwk[m] for m in members}, sort_keys=True, separators=(",", ":"))
    return b64(hashlib.sha256(text.encode()).digest())


def claims(sub, **over):
    now = int(time.time())
    c = {"fresh": False, "iat": now, "jti": str(uuid.uuid4()), "type": "access", "sub": sub,
         "nbf": now, "exp": now + 900}
    c.update(over)
    return c


@pytest.mark.parametrize("alg", ["RS256", "ES256", "ES384", "ES512", "RS512"])
def test_tokens_carry_the_kid_and_verify_with_the_jwks(sesamed, mariadb, alg):
    s = start(sesamed, mariadb, alg)
    body = register(s)
    doc = jwks(s)
    assert len(doc["keys"]) == 1
    key = doc["keys"][0]
    assert key["alg"] == alg and key["use"] == "sig" and key["kid"] == thumbprint(key)
    for name in ("access_token", "refresh_token"):
        assert jwt.get_unverified_header(body[name]) == {"alg": alg, "kid": key["kid"],
                                                         "typ": "JWT"}
    public = jwt.PyJWK(key).key
    access = jwt.decode(body["access_token"], public, algorithms=[alg])
    assert access["type"] == "access"
    assert jwt.decode(body["refresh_token"], public, algorithms=[alg])["type"] == "refresh"
    r = s.get("/users/me", headers=bearer(body["access_token"]))
    assert r.status_code == 200 and r.json()["user"]["email"] == "ann@example.com"
    r = s.get("/auth/verify", headers=bearer(body["access_token"]))
    assert r.status_code == 200 and r.headers["X-Auth-User"] == access["sub"]
    login = s.post("/users/login", json={"email": "ann@example.com", "password": "correct horse"})
    assert login.status_code == 200
    token = login.json()["access_token"]
    client = jwt.PyJWKClient(s.url + "/.well-known/jwks.json")
    signing = client.get_signing_key_from_jwt(token)
    assert jwt.decode(token, signing.key, algorithms=[alg])["sub"] == access["sub"]
    assert s.get("/users/me", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("alg,bits", [("RS256", None), ("RS384", "4096"), ("ES512", None)])
def test_jwks_numbers_at_full_length(sesamed, alg, bits):
    s = sesamed(routes={"jwks.lua": ROUTES["jwks.lua"]}, more=jwt_config(alg), start=False)
    keygen(s.dir, alg, "jwt", bits)
    s.start()
    key = jwks(s)["keys"][0]
    public = private_key(s.dir / "jwt.pem").public_key()
    if alg.startswith("RS"):
        assert set(key) == {"kty", "use", "alg", "kid", "n", "e"} and key["kty"] == "RSA"
        assert len(unb64(key["n"])) == int(bits or 3072) // 8
        assert int.from_bytes(unb64(key["n"]), "big") == public.public_numbers().n
        assert key["e"] == "AQAB"
    else:
        assert set(key) == {"kty", "use", "alg", "kid", "crv", "x", "y"} and key["kty"] == "EC"
        assert key["crv"] == "P-521"
        assert len(unb64(key["x"])) == len(unb64(key["y"])) == FIELD[alg]
        assert int.from_bytes(unb64(key["y"]), "big") == public.public_numbers().y
    assert all("=" not in v for v in key.values())


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_hmac_configs_publish_an_empty_jwks(sesamed, alg):
    s = sesamed(routes={"jwks.lua": ROUTES["jwks.lua"]},
                more=f'jwt = {{ algorithm = "{alg}", secret = "{"k" * 64}" }}\n')
    r = s.get("/.well-known/jwks.json")
    assert r.status_code == 200 and r.text == '{"keys":[]}'


def reload(s, alg, previous):
    """Reloads with a new jwt table, and waits until only new workers answer."""
    before, old = s.log().count("reloaded"), set(s.workers())
    s.more = s.more.split("jwt = ")[0] + jwt_config(alg, previous)
    s.write_config()
    s.signal(signal.SIGHUP)
    s.wait_log("reloaded", count=before + 1)
    assert wait_for(lambda: not old & set(s.workers()))


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_rotation_with_previous_keys(sesamed, mariadb, alg):
    s = start(sesamed, mariadb, alg)
    old_token = register(s)["access_token"]
    old_kid = jwks(s)["keys"][0]["kid"]
    (s.dir / "jwt.pem").rename(s.dir / "old.pem")
    (s.dir / "jwt.pub").rename(s.dir / "old.pub")
    keygen(s.dir, alg)
    old_key = private_key(s.dir / "old.pem")
    sub = jwt.decode(old_token, options={"verify_signature": False})["sub"]
    no_kid = jwt.encode(claims(sub), old_key, algorithm=alg)

    reload(s, alg, ["old.pub"])
    doc = jwks(s)
    assert [k["kid"] for k in doc["keys"]][1] == old_kid and len(doc["keys"]) == 2
    new_token = s.post("/users/login", json={"email": "ann@example.com",
                                             "password": "correct horse"}).json()["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == doc["keys"][0]["kid"] != old_kid
    for token in (old_token, no_kid, new_token):
        assert s.get("/users/me", headers=bearer(token)).status_code == 200
        assert s.get("/auth/verify", headers=bearer(token)).status_code == 200
    for key in doc["keys"]:
        client_key = jwt.PyJWK(key).key
        token = old_token if key["kid"] == old_kid else new_token
        assert jwt.decode(token, client_key, algorithms=[alg])["sub"] == sub

    reload(s, alg, [])
    assert [k["kid"] for k in jwks(s)["keys"]] == [doc["keys"][0]["kid"]]
    for token in (old_token, no_kid):
        assert s.get("/users/me", headers=bearer(token)).status_code == 401
        assert s.get("/auth/verify", headers=bearer(token)).status_code == 401
    assert s.get("/users/me", headers=bearer(new_token)).status_code == 200


def forged_es256(s, sub, kid):
    """Tokens that must all be refused by an ES256 sesamed whose key is jwt.pem."""
    key = private_key(s.dir / "jwt.pem")
    public_pem = (s.dir / "jwt.pub").read_bytes()
    head = {"alg": "ES256", "kid": kid, "typ": "JWT"}
    payload = b64(claims(sub))
    signing_input = f"{b64(head)}.{payload}".encode()
    der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    r, s_ = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
    good = f"{b64(head)}.{payload}.{b64(raw)}"

    def es256(header):
        text = f"{b64(header)}.{payload}"
        r, s_ = decode_dss_signature(key.sign(text.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{text}.{b64(r.to_bytes(32, 'big') + s_.to_bytes(32, 'big'))}"

    def hs256(secret, header):
        text = f"{b64(header)}.{payload}"
        return f"{text}.{b64(hmac.new(secret, text.encode(), hashlib.sha256).digest())}"

    other_ec = ec.generate_private_key(ec.SECP256R1())
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return good, {
        "HS256 with the public PEM": hs256(public_pem, {"alg": "HS256", "typ": "JWT"}),
        "HS256 with the public PEM and kid": hs256(public_pem, {"alg": "HS256", "kid": kid}),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg None": f"{b64({'alg': 'None', 'kid': kid})}.{payload}.",
        "alg NONE with sig": f"{b64({'alg': 'NONE'})}.{payload}.{b64(raw)}",
        "alg ES384, ES256 signature": es256({"alg": "ES384", "kid": kid, "typ": "JWT"}),
        "alg ES256K": es256({"alg": "ES256K", "kid": kid}),
        "DER signature": f"{b64(head)}.{payload}.{b64(der)}",
        "truncated signature": f"{b64(head)}.{payload}.{b64(raw[:40])}",
        "one byte short": f"{b64(head)}.{payload}.{b64(raw[:-1])}",
        "zero signature": f"{b64(head)}.{payload}.{b64(bytes(64))}",
        "s is the group order": f"{b64(head)}.{payload}."
                                f"{b64(raw[:32] + ORDERS['ES256'].to_bytes(32, 'big'))}",
        "s plus the order": f"{b64(head)}.{payload}."
                            f"{b64(raw[:32] + ((s_ + ORDERS['ES256']) % 2**256).to_bytes(32, 'big'))}",
        "ES384 width": f"{b64(head)}.{payload}.{b64(raw + bytes(32))}",
        "kid a path": jwt.encode(claims(sub), key, algorithm="ES256",
                                 headers={"kid": "../../etc/passwd"}),
        "unknown kid": jwt.encode(claims(sub), key, algorithm="ES256",
                                  headers={"kid": b64(hashlib.sha256(b"x").digest())}),
        "kid a number": es256({"alg": "ES256", "kid": 1}),
        "kid empty": jwt.encode(claims(sub), key, algorithm="ES256", headers={"kid": ""}),
        "unrelated key, real kid": jwt.encode(claims(sub), other_ec, algorithm="ES256",
                                              headers={"kid": kid}),
        "unrelated key, no kid": jwt.encode(claims(sub), other_ec, algorithm="ES256"),
        "RS256 token": jwt.encode(claims(sub), other_rsa, algorithm="RS256",
                                  headers={"kid": kid}),
        "payload tampered": f"{b64(head)}.{b64(claims('999'))}.{b64(raw)}",
        "crit header": jwt.encode(claims(sub), key, algorithm="ES256",
                                  headers={"kid": kid, "crit": ["exp"]}),
        "expired": jwt.encode(claims(sub, exp=int(time.time()) - 10), key, algorithm="ES256",
                              headers={"kid": kid}),
    }


def test_forged_tokens_are_refused(sesamed, mariadb):
    s = start(sesamed, mariadb, "ES256")
    token = register(s)["access_token"]
    sub = jwt.decode(token, options={"verify_signature": False})["sub"]
    kid = jwt.get_unverified_header(token)["kid"]
    workers = s.workers()
    good, cases = forged_es256(s, sub, kid)
    assert s.get("/users/me", headers=bearer(good)).status_code == 200  # the forger's baseline
    for name, forged in cases.items():
        for path in ("/users/me", "/auth/verify"):
            r = s.get(path, headers=bearer(forged))
            assert r.status_code == 401, (name, path, r.status_code, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer error="), name
            assert "X-Auth-User" not in r.headers
    assert s.workers() == workers
    assert s.get("/users/me", headers=bearer(token)).status_code == 200


def test_es256_tokens_are_refused_by_rs256(sesamed, mariadb):
    s = start(sesamed, mariadb, "RS256")
    token = register(s)["access_token"]
    sub = jwt.decode(token, options={"verify_signature": False})["sub"]
    kid = jwt.get_unverified_header(token)["kid"]
    public_pem = (s.dir / "jwt.pub").read_bytes()
    text = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims(sub))}"
    cases = [
        jwt.encode(claims(sub), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                   headers={"kid": kid}),
        f"{text}.{b64(hmac.new(public_pem, text.encode(), hashlib.sha256).digest())}",
        jwt.encode(claims(sub), private_key(s.dir / "jwt.pem"), algorithm="RS384",
                   headers={"kid": kid}),
        jwt.encode(claims(sub), private_key(s.dir / "jwt.pem"), algorithm="PS256",
                   headers={"kid": kid}),
        token.rsplit(".", 1)[0] + "." + b64(bytes(256)),
        token[:-10],
    ]
    for forged in cases:
        assert s.get("/users/me", headers=bearer(forged)).status_code == 401, forged
        assert s.get("/auth/verify", headers=bearer(forged)).status_code == 401, forged
    assert s.get("/users/me", headers=bearer(token)).status_code == 200


# ---- configuration errors ----

def check(s):
    return subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def bad_configs(folder):
    """name: (jwt table, key path of the error, words of its message); keys written to folder."""
    ec256 = ec.generate_private_key(ec.SECP256R1())
    ec384 = ec.generate_private_key(ec.SECP384R1())
    rsa2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    for name, key in (("ec256", ec256), ("ec384", ec384), ("rsa", rsa2048),
                      ("rsa1024", rsa1024)):
        write_pem(folder / f"{name}.pem", key)
        write_pem(folder / f"{name}.pub", key, private=False)
    write_pem(folder / "rsa_other.pub", rsa_other, private=False)
    write_pem(folder / "fresh.pub", ec.generate_private_key(ec.SECP256R1()), private=False)
    (folder / "enc.pem").write_bytes(ec256.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    (folder / "garbage.pem").write_text("not a key\n")
    (folder / "adir").mkdir()
    secret = "s" * 40

    def pair(alg, private, public, extra=""):
        return (f'jwt = {{\n  algorithm = "{alg}",\n  private_key_file = "{private}",\n'
                f'  public_key_file = "{public}",\n{extra}}}\n')
    return {
        "wrong key type": (pair("ES256", "rsa.pem", "rsa.pub"), "jwt.private_key_file",
                           ["rsa.pem", "type RSA", "ES256 needs an EC key"]),
        "EC public file for RS256": (pair("RS256", "rsa.pem", "ec256.pub"),
                                     "jwt.public_key_file",
                                     ["ec256.pub", "type EC", "RS256 needs an RSA key"]),
        "wrong curve": (pair("ES256", "ec384.pem", "ec384.pub"), "jwt.private_key_file",
                        ["ec384.pem", "on P-384", "ES256 needs one on P-256"]),
        "wrong curve for ES512": (pair("ES512", "ec256.pem", "ec256.pub"),
                                  "jwt.private_key_file", ["on P-256", "needs one on P-521"]),
        "short RSA": (pair("RS256", "rsa1024.pem", "rsa1024.pub"), "jwt.private_key_file",
                      ["1024-bit RSA key", "2048"]),
        "mismatched RSA pair": (pair("RS256", "rsa.pem", "rsa_other.pub"), "jwt.public_key_file",
                                ["rsa_other.pub", "not the public half of jwt.private_key_file"]),
        "mismatched EC pair": (pair("ES256", "ec256.pem", "fresh.pub"), "jwt.public_key_file",
                               ["fresh.pub", "not the public half of jwt.private_key_file"]),
        "public key of another curve": (pair("ES256", "ec256.pem", "ec384.pub"),
                                        "jwt.public_key_file", ["ec384.pub", "P-384"]),
        "missing private file": (pair("ES256", "nowhere.pem", "ec256.pub"),
                                 "jwt.private_key_file",
                                 ["cannot read", "nowhere.pem", "No such file"]),
        "missing public file": (pair("ES256", "ec256.pem", "nowhere.pub"),
                                "jwt.public_key_file", ["cannot read", "nowhere.pub"]),
        "no public file": ('jwt = { algorithm = "ES256", private_key_file = "ec256.pem" }\n',
                           "jwt.public_key_file", ["jwt.public_key_file", "both needed"]),
        "no key at all": ('jwt = { algorithm = "RS256" }\n', "jwt.private_key_file",
                          ["both needed", "sesamectl keygen -a RS256"]),
        "a directory": (pair("ES256", "adir", "ec256.pub"), "jwt.private_key_file",
                        ["adir", "cannot read"]),
        "garbage": (pair("ES256", "garbage.pem", "ec256.pub"), "jwt.private_key_file",
                    ["garbage.pem", "no unencrypted PEM private key"]),
        "encrypted private key": (pair("ES256", "enc.pem", "ec256.pub"), "jwt.private_key_file",
                                  ["enc.pem", "no unencrypted PEM private key"]),
        "private key as public": (pair("ES256", "ec256.pem", "ec256.pem"),
                                  "jwt.public_key_file", ["no PEM public key"]),
        "secret with RS": (pair("RS256", "rsa.pem", "rsa.pub", f'  secret = "{secret}",\n'),
                           "jwt.secret", ["RS256 signs with a key pair"]),
        "secret file with ES": (pair("ES256", "ec256.pem", "ec256.pub",
                                     '  secret_file = "jwt.key",\n'),
                                "jwt.secret_file", ["ES256 signs with a key pair"]),
        "key files with HS": (f'jwt = {{\n  algorithm = "HS256",\n  secret = "{secret}",\n'
                              '  private_key_file = "ec256.pem",\n}\n', "jwt.private_key_file",
                              ["HS256 signs with a secret"]),
        "previous keys with HS": (f'jwt = {{\n  secret = "{secret}",\n'
                                  '  previous_keys = { "ec256.pub" },\n}\n',
                                  "jwt.previous_keys", ["HS256 signs with a secret"]),
        "previous key of the wrong curve": (pair("ES256", "ec256.pem", "ec256.pub",
                                                 '  previous_keys = { "ec384.pub" },\n'),
                                            "jwt.previous_keys", ["ec384.pub", "P-384"]),
        "previous key missing": (pair("ES256", "ec256.pem", "ec256.pub",
                                      '  previous_keys = { "ec256.pub", "gone.pub" },\n'),
                                 "jwt.previous_keys", ["gone.pub", "cannot read"]),
        "previous key a private key": (pair("RS256", "rsa.pem", "rsa.pub",
                                            '  previous_keys = "rsa.pem",\n'),
                                       "jwt.previous_keys", ["no PEM public key"]),
        "previous keys not strings": (pair("RS256", "rsa.pem", "rsa.pub",
                                           '  previous_keys = { 1 },\n'),
                                      "jwt.previous_keys", ["expected a string"]),
        "unknown algorithm": ('jwt = { algorithm = "PS256", private_key_file = "rsa.pem" }\n',
                              "jwt.algorithm", ["'PS256' is not one of", "ES512"]),
    }


def test_key_config_errors_name_the_key(sesamed):
    s = sesamed(start=False)
    cases = bad_configs(s.dir)
    pems = [p.read_text() for p in s.dir.glob("*.pem")]
    for name, (table, keypath, words) in cases.items():
        s.more = f"-- {name}\n" + table
        s.write_config()
        r = check(s)
        assert r.returncode == 1, (name, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if f": {keypath}: " in ln]
        assert lines, (name, r.stderr)
        assert lines[0].startswith(f"{s.config}:"), (name, r.stderr)
        number = int(lines[0][len(str(s.config)) + 1:].split(":")[0])
        key = keypath.split(".")[1]
        if key in table:
            assert key in s.config.read_text().splitlines()[number - 1], (name, r.stderr)
        for word in words:
            assert word in lines[0], (name, word, r.stderr)
        assert "KEY-----" not in r.stderr, name
        for pem in pems:
            for body_line in pem.splitlines()[1:-1]:
                assert body_line not in r.stderr, name


def test_a_relative_key_path_resolves_against_the_config(sesamed, tmp_path):
    s = sesamed(routes={"jwks.lua": ROUTES["jwks.lua"]}, start=False,
                more='jwt = { algorithm = "ES384", private_key_file = "keys/a.pem", '
                     'public_key_file = "keys/a.pub", previous_keys = "keys/b.pub" }\n')
    (s.dir / "keys").mkdir()
    keygen(s.dir / "keys", "ES384", "a")
    keygen(s.dir / "keys", "ES384", "b")
    assert check(s).returncode == 0
    s.start()
    assert len(jwks(s)["keys"]) == 2


# ---- sesamectl keygen ----

@pytest.mark.parametrize("alg", ["RS256", "ES256", "ES384", "ES512"])
def test_keygen_writes_a_key_pair(tmp_path, alg):
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    r = ctl("keygen", "-a", alg, str(private), str(public))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    key = private_key(private)
    if alg.startswith("RS"):
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == CURVES[alg].name
    loaded = serialization.load_pem_public_key(public.read_bytes())
    assert loaded.public_numbers() == key.public_key().public_numbers()
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    assert "kid " in r.stdout


def test_keygen_bits(tmp_path):
    keygen(tmp_path, "RS512", "k", "4096")
    assert private_key(tmp_path / "k.pem").key_size == 4096
    for bits in ("1024", "16384", "x"):
        assert ctl("keygen", "-a", "RS256", "-b", bits, str(tmp_path / "a"),
                   str(tmp_path / "b")).returncode == 2
    assert ctl("keygen", "-a", "ES256", "--bits", "2048", str(tmp_path / "a"),
               str(tmp_path / "b")).returncode == 2
    assert ctl("keygen", "-a", "ES256", str(tmp_path / "a")).returncode == 2
    assert ctl("keygen", "-a", "HS256", str(tmp_path / "a"), str(tmp_path / "b")).returncode == 2
    assert ctl("keygen", "-a", "ES256", str(tmp_path / "a"), str(tmp_path / "a")).returncode == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_keygen_never_overwrites_without_force(tmp_path):
    private, public = keygen(tmp_path, "ES256")
    before = private.read_bytes(), public.read_bytes()
    r = ctl("keygen", "-a", "ES256", str(private), str(public))
    assert r.returncode == 1 and "--force" in r.stderr
    assert (private.read_bytes(), public.read_bytes()) == before
    # Neither file is written when the other one exists.
    other = tmp_path / "other.pem"
    assert ctl("keygen", "-a", "ES256", str(other), str(public)).returncode == 1
    assert not other.exists() and public.read_bytes() == before[1]
    assert not list(tmp_path.glob("*.XXXXXX")) and len(list(tmp_path.iterdir())) == 2
    r = ctl("keygen", "--force", "-a", "ES256", str(private), str(public))
    assert r.returncode == 0, r.stderr
    assert private.read_bytes() != before[0] and public.read_bytes() != before[1]
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert len(list(tmp_path.iterdir())) == 2
    secret = tmp_path / "jwt.key"
    assert ctl("keygen", str(secret)).returncode == 0
    text = secret.read_text()
    assert ctl("keygen", str(secret)).returncode == 1 and secret.read_text() == text
    assert ctl("keygen", "-f", str(secret)).returncode == 0 and secret.read_text() != text
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_verified_signature_is_remembered_for_that_token_only(sesamed, mariadb):
    s = start(sesamed, mariadb, "ES256", workers=1)
    token = register(s)["access_token"]
    for _ in range(3):  # the first verifies the signature, the others find it verified
        assert s.get("/auth/verify", headers=bearer(token)).status_code == 200
    head, payload, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in (0, 10, len(sig) - 2):
        other = alphabet[(alphabet.index(sig[i]) + 1) % 64]
        changed = f"{head}.{payload}.{sig[:i]}{other}{sig[i + 1:]}"
        assert s.get("/auth/verify", headers=bearer(changed)).status_code == 401, i
    body = json.loads(unb64(payload))
    body["sub"] = "2"
    assert s.get("/auth/verify",
                 headers=bearer(f"{head}.{b64(body)}.{sig}")).status_code == 401
    assert s.get("/auth/verify", headers=bearer(token)).status_code == 200


def test_keygen_wants_two_files(tmp_path):
    for private, public in (("k.pem", "k.pem"), ("k.pem", "./k.pem"), ("k.pem", "sub/../k.pem")):
        (tmp_path / "sub").mkdir(exist_ok=True)
        r = subprocess.run([SESAMECTL, "keygen", "-f", "-a", "ES256", private, public],
                           cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 2, (private, public, r.stdout)
        assert "two files" in r.stderr
        assert not (tmp_path / "k.pem").exists()
