# Shared by the benchmark scripts: each owns one "## " section of bench/RESULTS.md.

# replace_section TITLE FILE puts FILE, which starts with the heading "## TITLE", in place of
# that section of bench/RESULTS.md (up to the next "## " heading), or appends it; the other
# benchmarks' sections are kept as they are.
replace_section() {
  local title=$1 section=$2 out=bench/RESULTS.md tmp
  tmp=$(mktemp)
  [[ -f $out ]] || printf '# Benchmark results\n' >"$out"
  awk -v title="## $title" -v section="$section" '
    function put(  line) { while ((getline line < section) > 0) print line; done = 1 }
    /^## / { skip = 0 }
    $0 == title { put(); skip = 1; next }
    !skip { print; last = $0 }
    END { if (!done) { if (last != "") print ""; put() } }
  ' "$out" >"$tmp"
  mv "$tmp" "$out"
}
