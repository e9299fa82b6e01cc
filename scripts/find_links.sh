# Source it: sets find_links, the uv arguments for the local wheel folders pip is configured
# with (PIP_FIND_LINKS or pip's config), where the CPU torch wheel lies on the CPU machines.
# uv does not read pip's configuration.
find_links=()
_vz_links="${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}"
for _vz_dir in $_vz_links; do
  [[ -d "${_vz_dir#file://}" ]] && find_links+=(--find-links "${_vz_dir#file://}")
done
unset _vz_links _vz_dir
