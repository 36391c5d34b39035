"""Writes tests/data/unicode-torture.txt: a text made to break tokenizers (normalization, regex
classes, byte fallback, added tokens, invalid UTF-8). It holds invalid UTF-8 on purpose, so it is
written as bytes; run this script again after editing it (python3 tests/data/make_unicode_torture.py).
tests/py/tokenizer_ref.py compares lowbit with the `tokenizers` package on it."""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unicode-torture.txt")

TEXT = [
    "Unicode torture text for the lowbit tokenizer.\n",
    # combining marks: precomposed vs decomposed, stacked marks in non-canonical order, singletons
    "caf\u00e9 cafe\u0301 r\u00e9sum\u00e9 re\u0301sume\u0301 na\u00efve nai\u0308ve\n",
    "a\u0301\u0316\u0300\u0323 o\u0323\u0302 o\u0302\u0323 \u1ec7 e\u0323\u0302 q\u0307\u0323\n",
    "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307l\u036e\u0312\u036bg\u030c\u0317\u035a"
    "\u031ao\u0319\u0314\u036e\u0307\u0350\u0307 (zalgo)\n",
    "\u212b \u2126 \u212a \u00c5 A\u030a \ufb01ligature \ufb00 \u2460\u2461 \u00bd \u2075 "
    "\uff26\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \u3300 \u00aa\u00ba\n",
    "Ti\u1ebfng Vi\u1ec7t: Ti\u00ea\u0301ng Vi\u00ea\u0323t, \u01a0\u0301 \u1eda\n",
    # scripts
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca\u3001\u3072\u3089"
    "\u304c\u306a\u3002\uff76\uff80\uff76\uff85 \u30ac \u30ab\u3099 \u304b\u309a\n",
    "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5\uff0c\u6807\u70b9\u7b26\u53f7\uff01\u3000\u5168\u89d2"
    "\u7a7a\u683c \u9f98\u9750\n",
    "\ud55c\uad6d\uc5b4 \u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165 \u1112\u1161 \u11ab "
    "\uac00\u11a8 \u3131\u314f\n",
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \u0939\u093f\u0928\u094d\u0926\u0940 "
    "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd \u0b95\u0bca \u0b95\u0bc6\u0bbe \u0995\u09cb \u0995\u09c7\u09be\n",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0391\u0301 \u03a3\u039f\u03a6\u039f\u03a3 "
    "\u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0419 \u0418\u0306\n",
    # emoji
    "\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 "
    "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f1eb\U0001f1f7\U0001f1ef\U0001f1f5 1\ufe0f\u20e3 "
    "\u2764\ufe0f \U0001f9d1\U0001f3ff\u200d\U0001f4bb \U0001f600\U0001f600\U0001f600\n",
    # right to left with bidi controls
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 "
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd \u200eLTR\u200f \u202aemb\u202c "
    "\u202bemb\u202c \u202doverride\u202c \u202eedirrevo\u202c \u2066iso\u2069 \u2067x\u2069\n",
    "\u0627\u0644\u0639\u064e\u0631\u064e\u0628\u0650\u064a\u0651\u064e\u0629 \u0661\u0662\u0663 "
    "\u05d1\u05bc\u05b0 \ufb2a\n",
    # control characters and line ends
    "tab\there\r\nCRLF line\r\nlone CR\rvertical\x0btab form\x0cfeed nul\x00byte esc\x1b[31mred\x1b[0m "
    "del\x7f nel\u0085x ls\u2028ps\u2029end\n",
    # spaces, including the ones regex engines disagree on
    "nbsp\u00a0x ogham\u1680x mongolian\u180ex en\u2000em\u2001thin\u2009hair\u200ax "
    "zwsp\u200bx nnbsp\u202fx mmsp\u205fx ideo\u3000x bom\ufeffx a\u180e b \u180e\n",
    "\ufeffbom at a line start, word\u2060joiner, soft\u00adhyphen\n",
    # digits
    "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669 \u0966\u0967\u0968\u0969 "
    "\uff11\uff12\uff13 12345678901234567890 3.14159 1,000,000 \u00b2\u00b3 \u2163 \U0001d7ce\n",
    # contractions in many cases (the regex is case-insensitive for them)
    "It's IT'S it'S we'LL We'll they'Re THEY'RE I'M i'm she'd SHE'D you've YOU'VE can't CAN'T\n",
    "'s 'S 'll 'LL 're 'Re 've 'm 'd 't '\u017f don\u2019t rock'n'roll ''s '''\n",
    # long runs of white space
    "spaces:" + " " * 50 + "end\n",
    "tabs:" + "\t" * 9 + "end \t \t \n",
    "\n" * 20,
    " \n  \n   \n\n \r\n \r \n\t\n",
    "trailing spaces   \n   leading spaces\n",
    # text that looks like special and added tokens
    "<s> </s> <unk> <s>Hello</s> <<s>> <s<s>> </s></s><s>\n",
    "<|begin_of_text|>Hi<|eot_id|> <|end_of_text|> <|begin_of_text| <|reserved_special_token_250|> "
    "<|reserved_special_token_251|> <|BEGIN_OF_TEXT|>\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n<think>hmm</think>"
    "<tool_call>{}</tool_call><|endoftext|> <|im_start <|im_end|>x\n",
    "<think>\n\n</think>\n\n<think><think></think></think>\n",
    # letters and numbers of recent Unicode versions, marks with new combining classes
    "new: \u1c89\u1c8a \U00031350\U00031351 \U0002ebf0 \U00016100\U00016101 \U00016d70\U00016d71 "
    "\U0001e030 a\u0898\u0301 a\u0301\u0898 \U00011935\U00011930 \U00011938 \u32ff \U0001fbf1\n",
    # URL-ish, code-ish, punctuation runs
    "https://example.com/path?q=1&r=%20#frag email@example.org ~/.bashrc C:\\Windows\\System32\n",
    "if (x != y && z >= 0) { return a->b[i++] << 2; } // comment /* block */ #include <stdio.h>\n",
    "!!! ??? ... --- ___ *** ((( ))) [[[ ]]] {{{ }}} \u2014\u2014 \u2026 \u00ab\u00bb \u201c\u201d\n",
]

INVALID = [
    b"lone continuation \x80 and \xbf\x80\x80 bytes\n",
    b"overlong \xc0\xaf \xc1\xbf \xe0\x80\xaf \xf0\x80\x80\xaf\n",
    b"surrogates \xed\xa0\x80 \xed\xbf\xbf \xed\xa0\xbd\xed\xb8\x80\n",
    b"beyond U+10FFFF \xf4\x90\x80\x80 and \xf5\x80 \xf8\x88\x80\x80\x80 \xff\xfe\xfd\n",
    b"truncated \xe4\xb8 then text, \xf0\x9f\x98 then text, \xc3 then text\n",
    b"mixed \xe4\xb8\xad\xe4\xb8 \xe6\x96\x87\x80 \xf0\x9f\x98\x80\xf0\x9f\n",
    b"valid edges \xc2\x80 \xdf\xbf \xe0\xa0\x80 \xef\xbf\xbf \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf\n",
]


def main():
    data = "".join(TEXT).encode("utf-8") + b"".join(INVALID) + b"ends inside a character \xe2\x82"
    with open(OUT, "wb") as f:
        f.write(data)
    print(f"{OUT}: {len(data)} bytes")


if __name__ == "__main__":
    main()
