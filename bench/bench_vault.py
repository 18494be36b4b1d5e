"""Benchmark: FieldCipher seal+open of a field vs raw AES-GCM of the same bytes, in one run.

Run: python bench/bench_vault.py [--iterations N] [--rounds N]
Exits 1 if a field's vault round trip takes more than 2x its raw AES-GCM round trip (issue 17).

Two fields: a 1 KiB note sealed as bytes (`encrypt` + `decrypt`), and a short name sealed as
text the way `patients.services.seal`/`unseal` do it (`encrypt` of a str + `decrypt_str`). The
raw baseline uses a pre-built AESGCM, a fresh os.urandom nonce per message (as any correct use
must) and a fixed AAD, on the field's UTF-8 bytes; the vault side uses a cached FieldCipher and
builds the associated data of each row. Rounds interleave the two sides, so machine-load drift
affects both alike, and the best round of each counts. Times are the process's CPU time
(`time.process_time`), so the time spent waiting for a core on a shared machine is not counted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from slussen.vault import FieldCipher, new_data_key

NOTE = ("Anteckning åäö " * 80).encode("utf-8")[:1024]
NAME = "Tolvan Tolvansson"
ITERATIONS = 30_000
ROUNDS = 10
MAX_RATIO = 2.0


def best_of(rounds: int, iterations: int, *fns: Callable[[int], None]) -> list[float]:
    """Return each function's best per-iteration CPU time in seconds over `rounds` rounds.

    Rounds are interleaved so that machine-load drift affects both sides alike.
    """
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.process_time()
            fn(iterations)
            best[i] = min(best[i], (time.process_time() - start) / iterations)
    return best


def vault_round_trip(cipher: FieldCipher, field: str | bytes) -> Callable[[int], None]:
    """n seals and opens of `field` in the table "patients", column "note", rows 0..n-1."""
    if isinstance(field, str):

        def text(n: int) -> None:
            enc, dec = cipher.encrypt, cipher.decrypt_str
            for i in range(n):
                blob = enc(field, table="patients", column="note", row_id=i)
                if dec(blob, table="patients", column="note", row_id=i) is None:
                    raise AssertionError

        return text

    def binary(n: int) -> None:
        enc, dec = cipher.encrypt, cipher.decrypt
        for i in range(n):
            blob = enc(field, table="patients", column="note", row_id=i)
            if dec(blob, table="patients", column="note", row_id=i) is None:
                raise AssertionError

    return binary


def raw_round_trip(aead: AESGCM, data: bytes) -> Callable[[int], None]:
    """n raw AES-GCM encryptions and decryptions of `data` with fresh nonces, fixed AAD."""
    aad = b"slussen/field/v1/patients/note/123456/12345"

    def raw(n: int) -> None:
        enc, dec, urandom = aead.encrypt, aead.decrypt, os.urandom
        for _ in range(n):
            nonce = urandom(12)
            ct = enc(nonce, data, aad)
            if dec(nonce, ct, aad) is None:
                raise AssertionError

    return raw


def main() -> int:
    """Measure each field, print rates and ratios; return 1 if a ratio exceeds MAX_RATIO."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    assert len(NOTE) == 1024
    key = new_data_key()
    cipher = FieldCipher(key, 12345)
    aead = AESGCM(key)
    print(f"{args.iterations} iterations, best of {args.rounds} rounds")
    failed = False
    for label, field in (("1 KiB note (bytes)", NOTE), (f"name, {len(NAME)} chars (str)", NAME)):
        data = field.encode("utf-8") if isinstance(field, str) else field
        vault, raw = vault_round_trip(cipher, field), raw_round_trip(aead, data)
        # Sanity check and warm-up.
        blob = cipher.encrypt(field, table="patients", column="note", row_id=1)
        assert cipher.decrypt(blob, table="patients", column="note", row_id=1) == data
        vault(1000)
        raw(1000)
        t_vault, t_raw = best_of(args.rounds, args.iterations, vault, raw)
        ratio = t_vault / t_raw
        print(f"{label}:")
        print(
            f"  raw AESGCM  encrypt+decrypt: {1 / t_raw:>10,.0f} ops/s  ({t_raw * 1e6:.2f} us/op)"
        )
        print(
            f"  FieldCipher encrypt+decrypt: {1 / t_vault:>10,.0f} ops/s  "
            f"({t_vault * 1e6:.2f} us/op)"
        )
        print(f"ratio vault/raw, {label}: {ratio:.2f} (limit {MAX_RATIO:.1f})")
        failed = failed or ratio > MAX_RATIO
    if failed:
        print("FAIL: vault overhead too high", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
