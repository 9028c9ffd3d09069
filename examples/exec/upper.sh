#!/bin/sh
# A forkpool exec worker in plain shell: one task, "upper", which upper-cases
# a string. Run it as:  forkpoold --exec sh=examples/exec/upper.sh
# and call it as task "sh.upper". Needs only sh, sed and tr.
#
# The protocol is one JSON object per line on stdin and stdout. This worker
# understands just the shape it is sent: {"id":N,"task":"upper","args":"text"}
# with a plain string (no escaped quotes) as args.
echo '{"ready":{"tasks":["upper"]}}'
while IFS= read -r line; do
	id=$(printf '%s\n' "$line" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
	arg=$(printf '%s\n' "$line" | sed -n 's/.*"args":"\([^"\\]*\)"}$/\1/p')
	case $line in
	*'"task":"upper"'*'"args":"'*)
		printf '{"id":%s,"value":"%s"}\n' "$id" "$(printf '%s' "$arg" | tr '[:lower:]' '[:upper:]')" ;;
	*)
		printf '{"id":%s,"error":"upper: expected a string without quotes or backslashes"}\n' "$id" ;;
	esac
done
