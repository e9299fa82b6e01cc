"""Pairs flow: generate the image-pair pool of every configured domain (cached)."""

from __future__ import annotations

from prefect import flow, tags

from flows.options import Domain, with_knobs
from tasks.layout import pairs_dir
from tasks.pairs import generate_pairs, manifest_ready
from tasks.session import settings_of


@flow(name="vision-zero-pairs")
def pairs_flow(
    params: str = "params.yaml", overrides: list[str] | None = None, domains: list[Domain] | None = None,
    seed: int | None = None,
) -> list[str]:
    """One generate-pairs task per domain in pairs.domains; a re-run with the same params and
    code is a cache hit (skipped), unless the folder's manifest was deleted.

    Args:
        params: Settings file (params.yaml), the source of truth the fields below override.
        overrides: Any other setting as section.key=value, e.g. pairs.n_train=500 (as --set).
        domains: pairs.domains, the image-pair domains to generate (empty: the settings file's).
        seed: runtime.seed, the master seed of the pairs (empty: the settings file's).
    """
    overrides = with_knobs(overrides, domains=domains, seed=seed)
    s = settings_of(params, overrides)
    folders = []
    for domain in s.pairs.domains:
        out = pairs_dir(s, domain)
        task = generate_pairs.with_options(refresh_cache=not manifest_ready(out))
        with tags(f"domain:{domain}"):
            folders.append(task(params, overrides, domain, out))
    return folders


if __name__ == "__main__":
    from flows.cli import run

    run(pairs_flow, __doc__, lambda dirs: print("\n".join(dirs)))
