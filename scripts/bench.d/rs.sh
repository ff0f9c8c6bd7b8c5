# rs.sh: the bench's rs group, sourced by scripts/bench (its helpers and variables in scope).
#
# GET /auth/verify's latency (paced as the p99 group paces it) while log-ins keep one worker
# issuing RS256 tokens with a 3072-bit key (each log-in signs an access and a refresh token,
# 1.5 to 3 ms each), against BENCH_USERS' seeded users on SQLite. An RSA signature made on the
# event loop holds up every request of that worker; made on a job thread, it holds up none.
# With BENCH_BASE=DIR (the build folder of another tree, with its sesamed: e.g. main's before
# a change) that sesamed is measured first, in the same run and on the same files, as
# rs_verify_base and rs_login_base.
rs_run() { # ID SESAMED
	local id=$1 bin=$2 pid token db="$work/rs-$1.db"
	cp "$work/rs.db" "$db"
	sesame_conf "$id" 1 "$(sqlite_storage "$db")" \
		'jwt = { algorithm = "RS256", private_key_file = "rs.pem", public_key_file = "rs.pub" }'
	start "$work/$id.log" "$bin" -f -c "$work/$id.lua"
	pid=$started
	wait_up "127.0.0.1:${port[$id]}/healthz" "$work/$id.log"
	token=$(curl -fs -X POST "127.0.0.1:${port[$id]}/users/login" -H 'Content-Type: application/json' \
		-d "{\"email\":\"u1@example.com\",\"password\":\"$password\"}" |
		/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') ||
		fail "no RS256 log-in on $bin" "$work/$id.log"
	local logins
	start "$out/wrk/${id/verify/login}-1.txt" wrk -t2 -c"$hash_connections" -d"$((seconds + 2))s" \
		--timeout 10s -s "$top/scripts/bench.d/login.lua" "http://127.0.0.1:${port[$id]}" -- "$few" "$password"
	logins=$started
	sleep 1
	load "$id" 1 4 -s "$top/scripts/bench.d/paced.lua" -H "Authorization: Bearer $token" \
		"http://127.0.0.1:${port[$id]}/auth/verify" -- $((4000 / p99_rate))
	forget "$logins"
	record "${id/verify/login}" 1 "$out/wrk/${id/verify/login}-1.txt"
	stop "$pid"
}

rs_once() {
	"$dir/sesamectl" keygen -a RS256 --bits 3072 "$work/rs.pem" "$work/rs.pub" >/dev/null
	sesame_conf rsdb 1 "$(sqlite_storage "$work/rs.db")"
	ctl rsdb migrate >/dev/null
	users_sqlite "$work/rs.db" "$few"
	if [ -n "${BENCH_BASE:-}" ]; then
		[ -x "$BENCH_BASE/sesamed" ] || fail "BENCH_BASE: no sesamed in $BENCH_BASE"
		rs_run rs_verify_base "$BENCH_BASE/sesamed"
	fi
	rs_run rs_verify "$dir/sesamed"
}
