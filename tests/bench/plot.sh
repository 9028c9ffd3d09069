# shellcheck shell=bash
# The plot of a run's throughput figures; sourced by scripts/bench for `scripts/bench plot` and
# after `scripts/bench all`.
#
# bench_plot RESULTS PNG : one panel per suite with figures in a unit per second (req/s, items/s,
# tasks/s, forks/s), one bar per measurement (its median, with a min-max error bar), forkpool's in
# blue and the references in grey, on a log scale so that an nginx ceiling and a fork floor fit in
# one panel. Each measurement is drawn once, under its first row's name. gnuplot (gnuplot-nox)
# draws it; scripts/bench installs it.

bench_plot() {
	local results=$1 png=$2 dir suites s n cols rows i=0
	[ -s "$results" ] || { echo "bench: plot: no results in $results (run scripts/bench first)" >&2; return 1; }
	dir=$(mktemp -d "${TMPDIR:-/tmp}/fp-plot.XXXXXX")
	# One data file per suite: "label" median min max colour, in the tables' order.
	awk -v dir="$dir" '
		{
			delete f
			split($0, part, / \| /)
			nf = split(part[1], kv, " ")
			for (i = 1; i <= nf; i++) { p = index(kv[i], "="); f[substr(kv[i], 1, p - 1)] = substr(kv[i], p + 1) }
			if (f["unit"] !~ /\/s$/ || !("median" in f)) next
			id = f["suite"] " " f["key"] " " f["field"]
			if (id in seen) next
			seen[id] = 1
			if (!(f["suite"] in order)) { order[f["suite"]] = ++nsuites; names[nsuites] = f["suite"]; unit[f["suite"]] = f["unit"] }
			label = part[2]; gsub(/"/, "", label)
			printf "\"%s\" %s %s %s %d\n", label, f["median"], f["min"], f["max"], f["key"] ~ /^fp\./ ? 1 : 2 \
				> (dir "/" f["suite"] ".dat")
		}
		END { for (i = 1; i <= nsuites; i++) print names[i], unit[names[i]] > (dir "/suites") }' "$results"
	if [ ! -s "$dir/suites" ]; then
		echo "bench: plot: no throughput figures in $results" >&2
		rm -rf "$dir"
		return 1
	fi
	suites=$(cut -d' ' -f1 "$dir/suites")
	n=$(wc -l <"$dir/suites")
	cols=2
	[ "$n" -eq 1 ] && cols=1
	rows=$(((n + cols - 1) / cols))
	{
		echo "set terminal pngcairo noenhanced size $((cols * 760)),$((rows * 430)) font 'sans,9'"
		echo "set output '$png'"
		echo "set multiplot layout $rows,$cols title 'forkpool and its references: throughput (median of the run, min-max bars; log scale)' font 'sans,12'"
		echo "set style fill solid 0.8 border -1"
		echo "set boxwidth 0.7"
		echo "set logscale y"
		echo "set grid ytics"
		echo "set xtics rotate by 35 right nomirror"
		echo "set bmargin 9"
		echo "set key off"
		echo "set linetype 1 lc rgb '#2b6cb0'"
		echo "set linetype 2 lc rgb '#a0a0a0'"
		for s in $suites; do
			i=$((i + 1))
			echo "set title '$s ($(awk -v s="$s" '$1 == s { print $2 }' "$dir/suites"))'"
			echo "plot '$dir/$s.dat' using 0:2:5:xtic(1) with boxes lc variable, '' using 0:2:3:4 with yerrorbars lc rgb 'black' pt 0"
		done
		echo "unset multiplot"
	} >"$dir/plot.gp"
	if ! gnuplot "$dir/plot.gp" 2>"$dir/err"; then
		echo "bench: plot: gnuplot failed:" >&2
		sed 's/^/    /' "$dir/err" >&2
		rm -rf "$dir"
		return 1
	fi
	rm -rf "$dir"
	echo "bench: plot: $png"
}
