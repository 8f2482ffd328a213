"""A small SentencePiece BPE model trained here, set up like Llama 2's and Mistral's `tokenizer.model`.

Identity normalization, no whitespace collapsing, a dummy prefix, digits split, whitespace-only pieces
allowed and byte fallback: characters it never saw come out as `<0xNN>` pieces. `STRINGS` are the texts
the tests encode: plain prose, runs of spaces and newlines, code, digits, and characters outside the
training text.
"""

from __future__ import annotations

import functools
import io
import random

# Mistral-7B-Instruct-v0.1's chat template, as its GGUFs carry it.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}"
)

SENTENCES = [
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "In 2024 there were 366 days; a week has 7 days and a year 12 months.",
    "Hello, world! How are you today? I'm fine, thanks for asking.",
    "She sells sea shells by the sea shore, doesn't she?",
    "A quick brown fox jumps over the lazy dog near the river bank.",
    "Numbers such as 3.14159, 2.71828 and 1,000,000 appear in text.",
    "Call me at +1 (555) 010-9999 or write to someone@example.com.",
    "Émile naïvely ordered a crème brûlée at the café in Besançon.",
    "Über straße, Größe und Füße: deutsche Wörter mit Umlauten.",
    "¿Dónde está la biblioteca? ¡Está allí, señor!",
    "Emoji are fun 🙂 😀 🎉 and sometimes confusing 🤔.",
    "Tabs\tand\tspaces   are both whitespace.",
    "Line one\nLine two\n\nLine four after a blank line.",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i * i)\n",
    "if (x > 0 && y < 10) { z = x + y; } else { z = 0; }",
    'print("hello", end="")  # a comment',
    "SELECT name, age FROM users WHERE age >= 21 ORDER BY name;",
    "<html><body><p>Hello</p></body></html>",
    "The model answered: 'I don't know.' Then it tried again.",
    "Machine learning models learn patterns from data.",
    "Tokenizers split text into pieces called tokens.",
    "Jupyter notebooks mix code, text and pictures.",
    "The temperature was -5°C in the morning and 12°C at noon.",
    "Prices: $10.99, €8.50, £7.25 and ¥1200.",
    "An ellipsis… an em dash — and “curly quotes”.",
    "Mathematics: x² + y² = z², and √2 ≈ 1.414.",
    "UPPER CASE, lower case, and Mixed Case Words.",
    "well-known, state-of-the-art, up-to-date hyphenated words",
    "[INST] What is the capital of France? [/INST] The capital of France is Paris.",
    "The end.",
]


def corpus() -> list[str]:
    """A few hundred lines: the sentences, and variants with other numbers, casing and indentation."""
    rng = random.Random(0)
    lines = list(SENTENCES)
    for i in range(300):
        sentence = SENTENCES[i % len(SENTENCES)]
        words = sentence.split(" ")
        rng.shuffle(words)
        variant = " ".join(words)
        if i % 3 == 0:
            variant = variant.lower()
        if i % 5 == 0:
            variant = "    " + variant
        lines.append(f"{variant} {rng.randint(0, 99999)}")
    # One sentence a line, as trained from text files: like Llama's and Mistral's vocabularies, this one
    # has no piece with a newline in it ("\n" is the byte token <0x0A>).
    return [part for line in lines for part in line.split("\n")]


@functools.cache
def model_proto(vocab_size: int = 700) -> bytes:
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_writer=buffer,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return buffer.getvalue()


def processor():
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=model_proto())


def gguf_vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types as llama.cpp's convert script writes them."""
    sp = processor()
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_unused(i):
            types.append(5)
        elif sp.is_byte(i):
            types.append(6)
        else:
            types.append(1)
    return tokens, scores, types


def strings() -> list[str]:
    """A few hundred texts: each sentence plain and with odd whitespace, then random mixtures."""
    texts = ["", " ", "  ", "\n", "a", " a", "a ", "1", "12345", "\t\n \n", "日本語", "한국어 텍스트", "𝔘𝔫𝔦"]
    for s in SENTENCES:
        texts += [s, " " + s, s + " ", "   " + s + "   ", s.replace(" ", "  "), s + "\n\n", "\n" + s]
    rng = random.Random(1)
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,;:!?'\"()[]{}<>-_=+*/\\\n\t") + list(
        "éüßñ€°🙂日本語Ωж中文❤️ℵ"
    )
    pieces = [w for s in SENTENCES for w in s.split(" ")]
    for _ in range(150):
        parts = [
            rng.choice(pieces) if rng.random() < 0.6 else "".join(rng.choices(alphabet, k=rng.randint(1, 6)))
            for _ in range(rng.randint(1, 8))
        ]
        texts.append(rng.choice(["", " ", "  ", "\n"]).join(parts) if rng.random() < 0.3 else " ".join(parts))
    return texts
