import { Template } from '@huggingface/jinja';
import { AppError, clip } from '../errors.js';

/** One chat message as a template sees it. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** The variables a chat template is rendered with, besides `messages` (the names transformers uses). */
export interface ChatTemplateVars {
  /** The base's beginning-of-sequence token text; null: the variable is left undefined (renders as ""). */
  bos_token: string | null;
  /** The base's end-of-sequence token text; null: left undefined. */
  eos_token: string | null;
  /** End the prompt with the opening of an assistant turn (true for generation). */
  add_generation_prompt: boolean;
}

/** Parsed templates kept (a server has a handful of bases, each with one template). */
const CACHE_SIZE = 16;
const cache = new Map<string, Template>();

/**
 * Parses a chat template (cached by its text). A template that does not parse is the base's
 * fault, not the client's: INVALID_MODEL (a start-up error; on a request it becomes a 500 whose
 * details stay in the log). Call it when a base is loaded to fail fast.
 */
export function compileChatTemplate(template: string): Template {
  const hit = cache.get(template);
  if (hit) {
    // Refresh its place: the map's order is least recently used first.
    cache.delete(template);
    cache.set(template, hit);
    return hit;
  }
  let t: Template;
  try {
    t = new Template(template);
  } catch (e) {
    throw new AppError('INVALID_MODEL', `the chat template does not parse: ${clip(errorMessage(e), 300)}`, { cause: e });
  }
  cache.set(template, t);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return t;
}

/**
 * Renders a base's chat template (its `tokenizer_config.json` `chat_template`) over the
 * messages, with @huggingface/jinja (transformers.js's Jinja), the way transformers'
 * `apply_chat_template` does: `messages`, `bos_token`, `eos_token`, `add_generation_prompt`.
 * A template that refuses the messages (its `raise_exception(…)`, say, for roles that do not
 * alternate) is a BAD_REQUEST carrying the template's message.
 */
export function renderChat(template: string, messages: ReadonlyArray<ChatMessage>, vars: ChatTemplateVars): string {
  const t = compileChatTemplate(template);
  const items: Record<string, unknown> = {
    messages: messages.map((m) => ({ role: m.role, content: m.content })),
    add_generation_prompt: vars.add_generation_prompt,
  };
  if (vars.bos_token !== null) items.bos_token = vars.bos_token;
  if (vars.eos_token !== null) items.eos_token = vars.eos_token;
  try {
    return t.render(items);
  } catch (e) {
    throw new AppError('BAD_REQUEST', `the model's chat template refused the messages: ${clip(errorMessage(e), 300)}`, { cause: e });
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
