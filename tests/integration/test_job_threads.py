"""A worker's job threads: the hashing threads, their number and their priority below the
event loop's, and the other job threads beside them."""
import ctypes
import os
import struct
import subprocess

import pytest

from conftest import SESAMED, TOP

SECRET = "job-threads-tests-secret-0123456789abcdef"
ROUTES = {"users.lua": (TOP / "etc/sesame/routes/users.lua").read_text()}
STORAGE = ('storage = { backend = "sqlite", sqlite = { path = "sesame.db" } }\n'
           f'jwt = {{ secret = "{SECRET}" }}\n')
USER = {"email": "threads@example.com", "username": "threads", "password": "correct horse"}


def threads(pid):
    """{tid: (name, nice)} of a process's threads, from /proc/PID/task/TID/stat."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            text = f.read()
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        out[int(task)] = (name, int(fields[16]))  # the 19th field: nice
    return out


def named(pid, name):
    return [nice for n, nice in threads(pid).values() if n == name]


def registers_and_logs_in(s):
    assert s.post("/users/register", json=USER).status_code == 200
    r = s.post("/users/login", json={"email": USER["email"], "password": USER["password"]})
    assert r.status_code == 200, r.text


def test_hashing_threads_share_the_cores_and_run_below_the_loop(sesamed):
    s = sesamed(routes=ROUTES, more=STORAGE)  # two workers, the shipped defaults
    registers_and_logs_in(s)
    cores = os.cpu_count()
    for worker in s.workers():
        loop = threads(worker)[worker][1]
        hashing = named(worker, "sesamed-hash")
        assert len(hashing) == -(-cores // 2), threads(worker)  # the cores / 2, rounded up
        assert hashing == [min(loop + 10, 19)] * len(hashing)
        # Storage calls and file reads: server.threads of them, at the loop's priority.
        assert named(worker, "sesamed-jobs") == [loop, loop]


def test_hash_threads_and_hash_nice_are_settings(sesamed):
    s = sesamed("hash_threads = 3, hash_nice = 0, threads = 1,", routes=ROUTES, more=STORAGE,
                workers=1)
    registers_and_logs_in(s)
    worker = s.workers()[0]
    loop = threads(worker)[worker][1]
    assert named(worker, "sesamed-hash") == [loop] * 3
    assert named(worker, "sesamed-jobs") == [loop]


def test_check_bounds_the_hashing_settings(sesamed):
    s = sesamed(start=False)
    for setting, message in (
            ("hash_threads = 0,", 'server.hash_threads: expected "auto" or a number from 1 to 64'),
            ('hash_threads = "many",', 'server.hash_threads: expected "auto"'),
            ("hash_nice = 20,", "server.hash_nice: 20 is out of range (0 to 19)"),
            ("hash_nice = -1,", "server.hash_nice: -1 is out of range (0 to 19)")):
        s.write_config(setting)
        r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
        assert r.returncode == 1 and message in r.stderr, (setting, r.stderr)
    s.write_config('hash_threads = "auto", hash_nice = 19,')
    r = subprocess.run([SESAMED, "-t", "-c", str(s.config)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# A seccomp filter that answers setpriority(2) with EPERM, as a system call filter that does
# not allow it would: x86-64 numbers; elsewhere the test is skipped.
SYS_SETPRIORITY = 141
AUDIT_ARCH_X86_64 = 0xC000003E


def refuse_setpriority():
    """In the child, before exec: every later thread of sesamed is refused setpriority."""
    def insn(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)
    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    prog = b"".join([
        insn(ld_w_abs, 0, 0, 4),  # seccomp_data.arch
        insn(jeq_k, 0, 3, AUDIT_ARCH_X86_64),
        insn(ld_w_abs, 0, 0, 0),  # seccomp_data.nr
        insn(jeq_k, 0, 1, SYS_SETPRIORITY),
        insn(ret_k, 0, 0, 0x00050000 | 1),  # SECCOMP_RET_ERRNO | EPERM
        insn(ret_k, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
    ])
    buf = ctypes.create_string_buffer(prog)
    # struct sock_fprog on x86-64: unsigned short len (instructions), 6 bytes of padding, then
    # the pointer to the 8-byte instructions.
    fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0 or libc.prctl(
            pr_set_seccomp, seccomp_mode_filter, ctypes.c_char_p(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter")


def test_a_refused_priority_leaves_the_daemon_serving(sesamed):
    if os.uname().machine != "x86_64":
        pytest.skip("the filter is written for x86-64")
    s = sesamed('log_level = "debug", hash_threads = 3,', routes=ROUTES, more=STORAGE, start=False)
    s.logf = open(s.log_path, "ab")
    s.proc = subprocess.Popen([SESAMED, "-f", "-c", str(s.config)], stdout=s.logf,
                              stderr=s.logf, preexec_fn=refuse_setpriority)
    s.wait_ready()
    registers_and_logs_in(s)
    for worker in s.workers():
        loop = threads(worker)[worker][1]
        assert set(named(worker, "sesamed-hash")) == {loop}
    # Said once per worker, at debug, not once per thread.
    said = s.log().count("hashing threads keep the loop's priority: Operation not permitted")
    assert said == len(s.workers()), s.log()
