"""VERIFY.md: how an auditor checks a bundle with standard tools only (sh, sha256sum, openssl >= 3, awk).

The script block is generated for the bundle's own runs and keys, and the export tests run it
verbatim, clean and tampered, so the instructions cannot drift from what the bundle holds.
"""

from __future__ import annotations

SCRIPT_FENCE = "```sh"


def _script(quarter_runs: list[str], signed_statements: bool) -> str:
    runs = " ".join(quarter_runs)
    dsse = ""
    if signed_statements:
        dsse = f"""
echo "5. signed in-toto statements (DSSE)"
tmp=$(mktemp -d)
ptype=application/vnd.in-toto+json
for run in {runs}; do
  env_file="in-toto/$run.dsse.json"
  key=$(awk -F'"' '/"keyid":/{{print $4}}' "$env_file")
  listed "$trusted" "$key" || {{ echo "UNTRUSTED STATEMENT KEY: $env_file is signed by $key"; fail=1; }}
  awk -F'"' '/"payload":/{{print $4}}' "$env_file" | openssl base64 -d -A > "$tmp/body"
  awk -F'"' '/"sig":/{{print $4}}' "$env_file" | openssl base64 -d -A > "$tmp/sig"
  {{ printf 'DSSEv1 %d %s %d ' ${{#ptype}} "$ptype" $(($(wc -c < "$tmp/body"))); cat "$tmp/body"; }} > "$tmp/pae"
  openssl pkeyutl -verify -pubin -inkey "archive/keys/$key.pub" -rawin -in "$tmp/pae" -sigfile "$tmp/sig" >/dev/null \\
    || {{ echo "STATEMENT SIGNATURE: $env_file"; fail=1; }}
done
rm -rf "$tmp"
"""
    return f"""{SCRIPT_FENCE}
# Run from the bundle's top directory (the one holding SHA256SUMS), with the signing key id(s) your bank
# published through another channel as arguments:  sh verify.sh KEY_ID [KEY_ID ...]
fail=0
trusted=" $* "
revoked=" "
listed() {{ case "$1" in *" $2 "*) return 0;; esac; return 1; }}
[ "$#" -gt 0 ] || {{ echo "NO KEY ID GIVEN: pass the signing key id(s) you received separately as arguments"; fail=1; }}
tmp=$(mktemp -d)
echo "1. bundle files against SHA256SUMS"
sha256sum --quiet --strict -c SHA256SUMS || fail=1

echo "2. public keys: a key's id is the first 16 hex digits of SHA-256 over its raw 32 bytes"
for pub in archive/keys/*.pub; do
  id=$(openssl pkey -pubin -in "$pub" -outform DER | tail -c 32 | sha256sum | cut -c1-16)
  [ "$pub" = "archive/keys/$id.pub" ] || {{ echo "KEY: $pub holds key $id"; fail=1; }}
done

echo "3. chain: every sealed run, in seal order: manifest hash, signature, trusted signer, link, sequence"
cd archive
prev=none
position=0
for run in $(cut -d'"' -f8 chain.jsonl); do
  position=$((position + 1))
  manifest="$run/MANIFEST.json"
  if [ ! -f "$manifest" ]; then echo "MISSING RUN: $run (chain position $position)"; fail=1; prev=missing; continue; fi
  got=$(sha256sum "$manifest" | cut -c1-64)
  want=$(grep -F "\\"run_id\\":\\"$run\\"" chain.jsonl | cut -d'"' -f4)
  [ "$got" = "$want" ] || {{ echo "CHAIN: $manifest is not the manifest recorded in chain.jsonl"; fail=1; }}
  key=$(awk -F'"' '/^  "key_id":/{{print $4}}' "$manifest")
  openssl pkeyutl -verify -pubin -inkey "keys/$key.pub" -rawin -in "$manifest" -sigfile "$run/MANIFEST.sig" >/dev/null \\
    || {{ echo "SIGNATURE: $manifest does not verify with keys/$key.pub"; fail=1; }}
  # A new key is trusted when the manifest carries a rotation record signed by a trusted, unrevoked key.
  accepted=yes
  if listed "$revoked" "$key"; then
    echo "REVOKED KEY: $run is signed by $key, revoked before it was sealed"; fail=1; accepted=no
  elif ! listed "$trusted" "$key"; then
    from=$(awk -F'"' '/^    "previous_key_id":/{{print $4}}' "$manifest")
    printf 'livedrill-key-rotation/1 %s %s' "$from" "$key" > "$tmp/rotation"
    awk -F'"' '/^    "endorsement":/{{print $4}}' "$manifest" | openssl base64 -d -A > "$tmp/rotation.sig"
    if [ -n "$from" ] && listed "$trusted" "$from" && [ -f "keys/$from.pub" ] \\
      && openssl pkeyutl -verify -pubin -inkey "keys/$from.pub" -rawin -in "$tmp/rotation" -sigfile "$tmp/rotation.sig" >/dev/null 2>&1; then
      trusted="$trusted$key "
    else
      echo "UNTRUSTED KEY: $run is signed by $key, expected one of:$trusted(or a key they rotated to)"; fail=1; accepted=no
    fi
  fi
  if [ "$accepted" = yes ]; then
    for gone in $(awk '/^  "revokes": \\[/{{f=1; next}} f && /^  \\]/{{f=0}} f{{gsub(/[ ",]/, ""); print}}' "$manifest"); do
      revoked="$revoked$gone "
      trusted=$(printf '%s' "$trusted" | sed "s/ $gone / /")
    done
  fi
  linked=$(awk -F'"' '/"manifest_sha256":/{{print $4}}' "$manifest")
  [ "${{linked:-none}}" = "$prev" ] || {{ echo "CHAIN: $run does not link to the run sealed before it"; fail=1; }}
  sequence=$(awk '/^  "sequence":/{{gsub(/[^0-9]/, ""); print}}' "$manifest")
  [ "$sequence" = "$position" ] || {{ echo "ORDER: $run was sealed as number $sequence, chain position $position"; fail=1; }}
  prev=$got
done
rm -rf "$tmp"

echo "4. files of this quarter's runs against their signed manifests"
for run in {runs}; do
  (cd "$run" && awk -F'"' '/^      "path":/{{p=$4}} /^      "sha256":/{{print $4 "  " p}}' MANIFEST.json | sha256sum --quiet --strict -c -) \\
    || {{ echo "FILES: $run has files that differ from its manifest"; fail=1; }}
  listed=$(awk -F'"' '/^      "path":/{{print $4}}' "$run/MANIFEST.json" | LC_ALL=C sort)
  present=$(cd "$run" && find . -type f ! -name MANIFEST.json ! -name MANIFEST.sig ! -name MANIFEST.tsr | sed 's|^\\./||' | LC_ALL=C sort)
  [ "$listed" = "$present" ] || {{ echo "FILES: $run has files added or removed since sealing"; fail=1; }}
done
cd ..
{dsse}
if [ "$fail" = 0 ]; then echo "ALL CHECKS PASSED"; else echo "VERIFICATION FAILED"; fi
exit $fail
```"""


def _timestamps_section(timestamped_runs: list[str]) -> str:
    if not timestamped_runs:
        return "The manifests of this quarter carry no RFC 3161 timestamp. 本季度清单无 RFC 3161 可信时间戳。\n"
    commands = "\n".join(
        f"openssl ts -verify -data archive/{r}/MANIFEST.json -in archive/{r}/MANIFEST.tsr -CAfile TSA-ROOT.pem" for r in timestamped_runs
    )
    return f"""## Step 6: trusted timestamps / 第 6 步：可信时间戳

`MANIFEST.tsr` is an RFC 3161 reply from a Time-Stamping Authority over the exact bytes of `MANIFEST.json`: the manifest
existed at the TSA's time, whatever the clock of the host that sealed it. Get the TSA's root certificate from the TSA
(not from this bundle), save it as `TSA-ROOT.pem`, and run (each must print `Verification: OK`):
`MANIFEST.tsr` 是时间戳机构对 `MANIFEST.json` 的 RFC 3161 签名回执。请从时间戳机构获取其根证书（勿使用本包内的文件），然后执行：

```
{commands}
```

`openssl ts -reply -in archive/<run>/MANIFEST.tsr -text` shows the TSA time (`Time stamp:`).
"""


def verify_md(
    *,
    quarter: str,
    chained: list[str],
    quarter_runs: list[str],
    key_ids: list[str],
    trusted_key_ids: list[str] | None,
    chain_head_sha256: str,
    chain_head_sequence: int,
    signed_statements: bool,
    timestamped_runs: list[str],
) -> str:
    keys = "\n".join(f"- `{k}` — `archive/keys/{k}.pub`" for k in key_ids)
    anchor = f"{chain_head_sequence}:{chain_head_sha256}"
    if trusted_key_ids:
        pinned = (f"The export was checked against the trusted key(s) {', '.join(f'`{k}`' for k in trusted_key_ids)}: every run is "
                  "signed by one of them or by a key they admitted through a rotation record. 导出时已用上述受信密钥校验。")
    else:
        pinned = ("**No trusted key was pinned at export: the origin of this evidence was not established.** "
                  "导出时未指定受信密钥，证据来源未经确认。")
    runs = "\n".join(f"- `{r}`" for r in quarter_runs)
    statements = (
        "Each drill's in-toto statement is also signed (`in-toto/<run>.dsse.json`, DSSE, same key); step 5 checks it."
        if signed_statements
        else "The in-toto statements are not signed separately: their subject is the run's signed manifest."
    )
    return f"""# How to verify this evidence bundle / 如何校验本证据包

Quarter 季度: **{quarter}** · drills in this quarter 本季度演练: {len(quarter_runs)} · sealed runs in the chain 链中已封存运行: {len(chained)}

This bundle proves which live-migration drills ran in {quarter}, what they observed and how they ended.
Nothing here needs livedrill: a POSIX shell, `sha256sum`, `awk` and OpenSSL 3 (`openssl pkeyutl -rawin`) are enough.
本证据包无需 livedrill 即可校验：只需 POSIX shell、`sha256sum`、`awk` 与 OpenSSL 3。

## What is protected, and how / 保护机制

- Every file of a drill run is listed with its SHA-256 and size in the run's `MANIFEST.json`.
  每次演练的每个文件均以 SHA-256 与大小记录在该运行的 `MANIFEST.json` 中。
- `MANIFEST.sig` is the raw 64-byte Ed25519 signature of the exact bytes of `MANIFEST.json`.
  `MANIFEST.sig` 是对 `MANIFEST.json` 原始字节的 Ed25519 签名（64 字节）。
- Each manifest records the SHA-256 of the previously sealed run's `MANIFEST.json` (`previous.manifest_sha256`)
  and its place in the seal order (`sequence`); `archive/chain.jsonl` lists every sealed run in that order.
  So removing, reordering or editing any run breaks a signed link.
  每个清单记录上一个已封存运行清单的 SHA-256 与封存序号，删除、重排或修改任何运行都会破坏已签名的链接。
- `SHA256SUMS` covers every other file of the bundle (it detects damage in transit; the signatures prove origin).

Runs of other quarters are present as their manifest and signature only, so the whole chain can be checked.
其他季度的运行只包含清单与签名，以便校验完整的链。

## Step 0: trust the key / 第 0 步：确认公钥

The signing keys of this archive 本存档的签名密钥:

{keys}

{pinned}

Take the key id from your bank through another channel (letter, intranet, the previous quarter's audit), never from
this bundle: the script below takes it as its argument and fails for any run signed by another key, unless that key
was admitted by a rotation record signed by a key you gave. A bundle signed with a key you did not receive separately
proves nothing. 请从银行的其他渠道获取密钥编号（不要取自本包），并作为参数传给下面的脚本；任何其他密钥签名的运行都会校验失败。

Record the chain head of this export for the next audit 请记录本次链头以便下次审计核对:
`{anchor}` (sequence number and SHA-256 of the last sealed run's `MANIFEST.json`). The next bundle must still hold
that manifest at that place: `livedrill evidence verify --archive archive --trusted-key KEY.pub --anchor {anchor}`,
or by hand, `sed -n {chain_head_sequence}p archive/chain.jsonl` must show `{chain_head_sha256}`.

## Steps 1–{5 if signed_statements else 4}: run these commands / 执行以下命令

Unpack the bundle (`tar xzf livedrill-evidence-{quarter}.tar.gz`), change into its top directory, save the block
below as `verify.sh` and run `sh verify.sh KEY_ID` with the key id you received. It prints what is wrong, if anything,
and ends with `ALL CHECKS PASSED` or `VERIFICATION FAILED`.
解压后进入顶层目录，将下面的脚本保存为 `verify.sh`，执行 `sh verify.sh 密钥编号`；结尾输出 `ALL CHECKS PASSED` 或 `VERIFICATION FAILED`。

{_script(quarter_runs, signed_statements)}

Drills of {quarter} checked in step 4 第 4 步校验的本季度演练:

{runs}

{statements}

{_timestamps_section(timestamped_runs)}
## With livedrill / 使用 livedrill

`livedrill evidence verify --archive archive --quarter {quarter} --trusted-key KEY.pub --anchor PREVIOUS_HEAD` performs
the same checks (and revocations, and the anchor) and names the run, the file and the expected and actual values of
anything that differs. Without `--trusted-key` it answers "integrity verified, origin not established" and exits 3.

## What the other files are / 其他文件

- `report.html` — the bilingual report (open in a browser; print to PDF). 中英文报告，可打印为 PDF。
- `oscal/assessment-results.json` — OSCAL 1.2.1 assessment results, one result per drill, control CP-4 (contingency plan testing).
- `in-toto/<run>.statement.json` — in-toto Statement v1 with the test-result predicate; its subject is the run's `MANIFEST.json`.
"""
