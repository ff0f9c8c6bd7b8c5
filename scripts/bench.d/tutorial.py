"""tutorial.py: the tutorial service sesame's POST /users/register answers like, for comparison.

A Flask service as the well-known tutorial writes it: the user in a MySQL/MariaDB table
user(id, username, email, password) (Flask-SQLAlchemy's model), the password hashed with
passlib's pbkdf2_sha256 at 29000 rounds, and an access token laid out as flask-jwt-extended
makes one (fresh, iat, jti, type, sub, nbf, exp; HS256), made here with PyJWT, which
flask-jwt-extended uses underneath. One database connection per process: gunicorn's sync
workers serve one request at a time.

    TUTORIAL_SOCKET=/path/mysqld.sock TUTORIAL_DATABASE=tutorial TUTORIAL_SECRET=... \\
        gunicorn -w 2 -b 127.0.0.1:8000 tutorial:app
    python3 -c 'import tutorial; tutorial.init_db()'   # the table, once
"""
import datetime
import os
import uuid

import jwt
import pymysql
from flask import Flask, jsonify, request
from passlib.hash import pbkdf2_sha256

app = Flask(__name__)
SECRET = os.environ.get("TUTORIAL_SECRET", "change me")
HASHER = pbkdf2_sha256.using(rounds=29000)
_db = None


def db():
    global _db
    if _db is None:
        _db = pymysql.connect(unix_socket=os.environ["TUTORIAL_SOCKET"],
                              user=os.environ.get("TUTORIAL_USER", "root"),
                              database=os.environ.get("TUTORIAL_DATABASE", "tutorial"),
                              charset="utf8mb4")
    return _db


def init_db():
    with db().cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS user ("
                    " id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,"
                    " username VARCHAR(120) NOT NULL UNIQUE,"
                    " email VARCHAR(120) NOT NULL UNIQUE,"
                    " password VARCHAR(120) NOT NULL)")
    db().commit()


def create_access_token(identity):
    now = datetime.datetime.now(datetime.timezone.utc)
    claims = {"fresh": False, "iat": now, "jti": str(uuid.uuid4()), "type": "access",
              "sub": str(identity), "nbf": now, "exp": now + datetime.timedelta(minutes=15)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def fail(message, status):
    return jsonify(result="fail", error=message), status


@app.route("/users/register", methods=["POST"])
def register():
    data = request.get_json(silent=True) or {}
    username, email, password = data.get("username"), data.get("email"), data.get("password")
    if not username or not email or not password:
        return fail("username, email and password are required", 400)
    conn = db()
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM user WHERE email = %s OR username = %s", (email, username))
        if cur.fetchone() is not None:
            conn.rollback()
            return fail("user already exists", 409)
        cur.execute("INSERT INTO user (username, email, password) VALUES (%s, %s, %s)",
                    (username, email, HASHER.hash(password)))
        user_id = cur.lastrowid
    conn.commit()
    return jsonify(result="success", access_token=create_access_token(user_id))
