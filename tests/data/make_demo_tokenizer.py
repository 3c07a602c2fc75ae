#!/usr/bin/env python3
"""Writes tests/data/mamba_demo/tokenizer.json: a Hugging Face byte-level BPE tokenizer whose
vocabulary is exactly the 256 byte tokens of the demo model (vocab_size 256), with no merges and
no added tokens, so that token id b is the byte b and every id in [0, 256) is one the model takes.

    python3 tests/data/make_demo_tokenizer.py   # needs the `tokenizers` package

The byte-to-character map is GPT-2's (bytes_to_unicode below, checked against the tokenizers
package's own alphabet); the file is written with sorted keys, so a rerun gives the same bytes.
"""
import json
import pathlib

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

OUT = pathlib.Path(__file__).resolve().parent / "mamba_demo" / "tokenizer.json"


def bytes_to_unicode():
    """GPT-2's map: printable Latin-1 bytes stand for themselves, the other 68 bytes are shifted
    to U+0100 onwards in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, shifted = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + shifted)
            shifted += 1
    return out


def main():
    chars = bytes_to_unicode()
    assert sorted(chars.values()) == sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {chars[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    # Every byte is one token, id = byte value.
    text = "Hello, world! é\n"
    assert tok.encode(text).ids == list(text.encode("utf-8"))
    assert tok.decode(list(range(256))) == bytes(range(256)).decode("utf-8", errors="replace")
    data = json.loads(tok.to_str())
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(vocab)} byte tokens")


if __name__ == "__main__":
    main()
