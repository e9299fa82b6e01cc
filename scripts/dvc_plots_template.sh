#!/usr/bin/env bash
# Rebuild .dvc/plots.html: DVC's plots page with vega, vega-lite and vega-embed inlined, so
# `dvc plots show` works offline (DVC's own page loads them from a CDN). .dvc/config points
# plots.html_template at it. Run once when changing the versions (needs npm); the output is
# committed. Versions: the ones DVC's page names (dvc_render/vega.py).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${packages[@]}" >/dev/null)
out=.dvc/plots.html
{
  echo '<!DOCTYPE html>'
  echo '<html>'
  echo '<head>'
  echo '    {refresh_tag}'
  echo '    <title>DVC Plot</title>'
  echo "    <!-- ${packages[*]}, inlined by scripts/dvc_plots_template.sh (BSD-3-Clause, licences below) -->"
  for spec in "${packages[@]}"; do
    name=${spec%@*}
    mkdir -p "$work/$name" && tar xzf "$work/$name-${spec#*@}.tgz" -C "$work/$name"
    echo "    <!-- $spec"
    sed 's/--/- -/g' "$work/$name/package/LICENSE"
    echo '    -->'
    echo '    <script>'
    cat "$work/$name/package/build/$name.min.js"
    echo
    echo '    </script>'
  done
  echo '    <style>'
  echo '        table {'
  echo '            border-spacing: 15px;'
  echo '        }'
  echo '    </style>'
  echo '</head>'
  echo '<body>'
  echo '    {plot_divs}'
  echo '</body>'
  echo '</html>'
} > "$out"
# DVC fills the page with str.replace: the scripts must not contain its placeholders.
if grep -q -e '{scripts}' -e '</script' <(sed -n '/<script>/,/<\/script>/p' "$out" | grep -v '^    </script>$'); then
  echo "error: an inlined script contains a DVC placeholder or </script>" >&2
  exit 1
fi
echo "wrote $out ($(du -h "$out" | cut -f1))"
