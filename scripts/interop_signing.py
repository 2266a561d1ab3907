#!/usr/bin/env python3
"""Interop check for signatures: the real `model_signing` package (OpenSSF model signing, key mode) accepts
what `arapack sign` writes and rejects it after any tampering; `arapack verify` accepts what
`model_signing sign key` writes and rejects it after tampering.

    python scripts/interop_signing.py ARAPACK BUNDLE KEY.pem PUB.pem OTHER_PUB.pem

BUNDLE is a bundle folder or a GGUF file arapack wrote (it is changed and restored on the way; a single file is
signed as model_signing signs one, and has no files to add or remove). Prints one line per
check and exits 1 on any failure.
"""
import os
import subprocess
import sys

problems = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        problems.append(what)


def ms(*args):
    return subprocess.run([sys.executable, "-m", "model_signing", *args], capture_output=True, text=True)


def main():
    arapack, bundle, key, pub, other = sys.argv[1:6]
    single = os.path.isfile(bundle)
    sig = bundle + ".sig" if single else os.path.join(bundle, "model.sig")

    def ms_verify(public=pub, signature=sig):
        return ms("verify", "key", bundle, "--signature", signature, "--public_key", public)

    def arapack_verify(signature):
        return subprocess.run([arapack, "verify", bundle, "--signature", signature, "--public-key", pub], capture_output=True, text=True)

    r = subprocess.run([arapack, "sign", bundle, "--key", key], capture_output=True, text=True)
    check(r.returncode == 0, f"arapack sign: {r.stdout.strip()} {r.stderr.strip()}")
    r = ms_verify()
    check(r.returncode == 0 and "Verification succeeded" in r.stdout, f"model_signing verify accepts arapack's signature: {r.stdout.strip()} {r.stderr.strip()[-300:]}")

    weights = bundle if single else os.path.join(bundle, sorted(f for f in os.listdir(bundle) if f.endswith(".safetensors"))[-1])
    weights_name = os.path.basename(weights)
    original = open(weights, "rb").read()
    changed = bytearray(original)
    changed[-5] ^= 0x01
    open(weights, "wb").write(bytes(changed))
    r = ms_verify()
    check(r.returncode != 0, f"model_signing rejects it after one byte of {weights_name} changed")
    open(weights, "wb").write(original)

    if not single:
        extra = os.path.join(bundle, "extra.txt")
        open(extra, "w").write("added")
        r = ms_verify()
        check(r.returncode != 0, "model_signing rejects it after a file was added")
        os.remove(extra)

        config = os.path.join(bundle, "config.json")
        saved = open(config, "rb").read()
        os.remove(config)
        r = ms_verify()
        check(r.returncode != 0, "model_signing rejects it after a file was removed")
        open(config, "wb").write(saved)

    r = ms_verify(public=other)
    check(r.returncode != 0, "model_signing rejects it under another key")
    r = ms_verify()
    check(r.returncode == 0, "model_signing accepts it again once the bundle is restored")

    os.remove(sig)
    theirs = bundle + ".theirs.sig" if single else os.path.join(bundle, "theirs.sig")
    r = ms("sign", "key", bundle, "--private_key", key, "--signature", theirs)
    check(r.returncode == 0, f"model_signing sign key: {r.stdout.strip()} {r.stderr.strip()[-300:]}")
    r = arapack_verify(theirs)
    check(r.returncode == 0 and "ok    signature:" in r.stdout, f"arapack verify accepts model_signing's signature: {r.stdout[-300:]} {r.stderr}")
    open(weights, "wb").write(bytes(changed))
    r = arapack_verify(theirs)
    check(r.returncode == 1 and f"{weights_name} differs from the signed file" in r.stdout,
          f"arapack verify rejects model_signing's signature after tampering (exit {r.returncode})")
    open(weights, "wb").write(original)
    os.remove(theirs)

    print("ok" if not problems else f"{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
