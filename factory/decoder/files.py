"""Write the Hugging Face files that sit beside a decoder's tokenizer.json: tokenizer_config.json
(special tokens, the ChatML-style chat template the adapters are trained in) and
generation_config.json (eos_token_id lists end-of-text and end-of-turn).

usage: python3 factory/decoder/files.py <dir> [max positions]"""
import json, os, sys

CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
                 "{{ message['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

def write(d, max_pos=256):
    os.makedirs(d, exist_ok=True)
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|bos|>", "eos_token": "<|eos|>",
               "pad_token": "<|pad|>", "unk_token": None, "add_bos_token": False, "add_eos_token": False,
               "model_max_length": max_pos, "clean_up_tokenization_spaces": False,
               "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "chat_template": CHAT_TEMPLATE},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    json.dump({"bos_token_id": 1, "eos_token_id": [2, 4], "pad_token_id": 0, "do_sample": False, "max_length": max_pos},
              open(os.path.join(d, "generation_config.json"), "w"), indent=2)

if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 256)
