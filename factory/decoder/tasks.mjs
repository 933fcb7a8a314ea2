// The three generative tasks and the chat format they are trained in. The user message is the
// input text alone (the adapter is the task); the assistant message is the answer.
// The same format is the chat template written to tokenizer_config.json (factory/decoder/files.py).
export const TASKS = [
  { id: 'summarize', input: 'en_long', target: 'en_short' },
  { id: 'translate-it', input: 'en_short', target: 'it_short' },
  { id: 'riassumi', input: 'it_long', target: 'it_short' },
];

/** The chat template rendered for one user message with the generation prompt. */
export const chatPrompt = (user) => `<|bos|><|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;

/** Long descriptions are cut to about 600 characters at a sentence end, so a prompt fits the context. */
export function inputCut(text, max = 600) {
  if (text.length <= max) return text;
  const head = text.slice(0, max);
  const stop = Math.max(head.lastIndexOf('. '), head.lastIndexOf('.\n'), head.lastIndexOf('\n'));
  return stop > max / 3 ? head.slice(0, stop + 1) : head.slice(0, head.lastIndexOf(' '));
}
