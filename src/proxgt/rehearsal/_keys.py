"""What a rehearsal hands each site besides its data: a key pair in a private folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from proxgt.errors import ProxGTValueError

__all__ = ["site_keys", "private_folder"]


def private_folder(path: Path) -> Path:
    """``path`` created (or tightened) with mode 0700: key files and anything secret go there."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def site_keys(names: Sequence[str], public_keys: Sequence[str | None], key_dir: Path,
              given: Path | None) -> tuple[list[str], list[Path]]:
    """Each site's public key and secret key file.

    A site without a public key in the pilot gets a throwaway pair in ``key_dir`` (mode 0700); a site with one
    needs its secret file ``given/<name>.key_secret`` (``--keys``), checked against the pilot's public key.
    """
    # the site runtime's own key maker (imports torch with the executors package: not at module level)
    from proxgt.executors.site.transport import load_site_key, new_site_keys

    private_folder(key_dir)
    publics: list[str] = []
    secrets: list[Path] = []
    for name, public in zip(names, public_keys, strict=True):
        if public is None:
            _, secret_file, line = new_site_keys(name, key_dir)
            publics.append(line)
            secrets.append(secret_file)
            continue
        if given is None:
            raise ProxGTValueError(
                f"site {name} has a public_key in the pilot: give its secret key with --keys DIR "
                f"(DIR/{name}.key_secret), or leave public_key out for a throwaway key")
        given_file = given / f"{name}.key_secret"
        try:
            pub = load_site_key(given_file).public_key
        except ProxGTValueError as exc:
            raise ProxGTValueError(f"site {name}: cannot use the secret key {given_file}: {exc}") from None
        if pub != public:
            raise ProxGTValueError(f"site {name}: {given_file} does not hold the secret of the pilot's public_key")
        publics.append(public)
        secrets.append(given_file)
    return publics, secrets
