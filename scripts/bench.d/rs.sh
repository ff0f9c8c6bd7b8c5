# rs.sh: the bench's rs group, sourced by scripts/bench (its helpers and variables in scope).
#
# GET /auth/verify's latency (paced as the p99 group paces it) while refresh rotations keep one
# worker issuing RS256 tokens with a 3072-bit key: each POST /token/refresh signs a refresh and
# an access token, 1.5 to 3 ms each, and hashes no password (scripts/bench.d/refresh.lua, on
# the families of log-ins made first, twice BENCH_HASH_CONNECTIONS of them). Log-ins would
# measure mostly their argon2id hash, which the hashing threads make off the loop either way;
# rotations leave the signatures as the only heavy work, so what the verify's p99 shows is
# where they are made: an RSA signature made on the event loop holds up every request of that
# worker; made on a job thread, it holds up none. With BENCH_BASE=DIR (the build folder of
# another tree, with its sesamed: e.g. main's before a change) that sesamed is measured first,
# in the same run and on the same files, as rs_verify_base and rs_refresh_base.

# One log-in each of u1@example.com ... uN@example.com on ID's sesamed: the first one's access
# token printed, and each one's refresh token, one a line, into FILE.
rs_logins() { # ID N FILE
	local n
	for n in $(seq "$2"); do
		curl -fs -X POST "127.0.0.1:${port[$1]}/users/login" -H 'Content-Type: application/json' \
			-d "{\"email\":\"u$n@example.com\",\"password\":\"$password\"}" ||
			fail "no RS256 log-in on ${port[$1]}" "$work/$1.log"
		echo
	done | /usr/bin/python3 -c '
import json, sys
tokens = [json.loads(line) for line in sys.stdin if line.strip()]
with open(sys.argv[1], "w") as f:
    f.writelines(t["refresh_token"] + "\n" for t in tokens)
print(tokens[0]["access_token"])' "$3"
}

rs_run() { # ID SESAMED
	local id=$1 bin=$2 pid token db="$work/rs-$1.db" refresh=${1/verify/refresh}
	cp "$work/rs.db" "$db"
	sesame_conf "$id" 1 "$(sqlite_storage "$db")" \
		'jwt = { algorithm = "RS256", private_key_file = "rs.pem", public_key_file = "rs.pub" }'
	start "$work/$id.log" "$bin" -f -c "$work/$id.lua"
	pid=$started
	wait_up "127.0.0.1:${port[$id]}/healthz" "$work/$id.log"
	token=$(rs_logins "$id" $((2 * hash_connections)) "$work/$id.tokens")
	[ -n "$token" ] || fail "no RS256 log-in on $bin" "$work/$id.log"
	local rotations t=2
	[ "$hash_connections" -ge 2 ] || t=1
	start "$out/wrk/$refresh-1.txt" wrk -t$t -c"$hash_connections" -d"$((seconds + 2))s" \
		--timeout 10s -s "$top/scripts/bench.d/refresh.lua" "http://127.0.0.1:${port[$id]}" \
		-- "$work/$id.tokens" $t
	rotations=$started
	sleep 1
	load "$id" 1 4 -s "$top/scripts/bench.d/paced.lua" -H "Authorization: Bearer $token" \
		"http://127.0.0.1:${port[$id]}/auth/verify" -- $((4000 / p99_rate))
	forget "$rotations"
	record "$refresh" 1 "$out/wrk/$refresh-1.txt"
	stop "$pid"
}

rs_once() {
	"$dir/sesamectl" keygen -a RS256 --bits 3072 "$work/rs.pem" "$work/rs.pub" >/dev/null
	sesame_conf rsdb 1 "$(sqlite_storage "$work/rs.db")"
	ctl rsdb migrate >/dev/null
	users_sqlite "$work/rs.db" $((2 * hash_connections))
	if [ -n "${BENCH_BASE:-}" ]; then
		[ -x "$BENCH_BASE/sesamed" ] || fail "BENCH_BASE: no sesamed in $BENCH_BASE"
		rs_run rs_verify_base "$BENCH_BASE/sesamed"
	fi
	rs_run rs_verify "$dir/sesamed"
}
