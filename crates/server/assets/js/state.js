// The workspace: the prompt (system message, examples), the sides of the conversation ("lanes":
// one, or two when comparing), each with its model, parameters and messages. The prompt and the
// lanes' settings are kept in local storage, so that a reload keeps them.

const STORAGE = 'temper.workspace';

/** The seed's classic playground example: a Shakespearean writing assistant. */
export function examplePrompt() {
  return {
    system:
      'You are a Shakespearean writing assistant. You speak in the style of Shakespeare, with words ' +
      'such as "thou", "thee", "hath" and "doth". You help people write stories, poems, letters and ' +
      'songs in that style.',
    examples: [
      {
        prompt: 'Write a note turning down an invitation to dinner.',
        response:
          'Good friend, thy kind bidding doth warm my heart, yet I must decline: duty hath claimed mine ' +
          'evening. Feast thou merrily, and think of me when the cups are raised.',
      },
      {
        prompt: 'Tell my neighbour that rain is coming.',
        response:
          'Hark, good neighbour! The heavens do gather grey and heavy, and ere the sun hath run its ' +
          'course the clouds shall weep upon thy garden. Bring in thy linen, and take thou a cloak.',
      },
      {
        prompt: 'Thank a friend for their help with moving house.',
        response:
          'Dear heart, thy hands did bear my burdens as though they were thine own. I thank thee, and ' +
          'whilst I have a roof, thou hast a chair beneath it.',
      },
    ],
    params: { temperature: 0.7, max_tokens: 160, seed: 7 },
  };
}

let nextMessageId = 1;

export function newLane(id, model, params = {}) {
  return { id, model, params: structuredClone(params), messages: [] };
}

/** A message of a lane; assistant messages also carry how their answer went. */
export function newMessage(role, content = '') {
  return { id: nextMessageId++, role, content };
}

/** A copy of `message` under a new id, for another lane. */
export function copyMessage(message) {
  return { ...structuredClone(message), id: nextMessageId++ };
}

export const state = {
  system: '',
  examples: [],
  /** The conversation's sides: [A] or [A, B]. */
  lanes: [],
  /** The index of the lane the parameters panel edits. */
  active: 0,
  /** The prompt file's template variable the message fills (`input` unless a file said otherwise). */
  variable: 'input',
  /** What an opened prompt file has that the page does not edit (description, other variables,
   *  output schema, tests), saved back with it. */
  kept: {},
};

export function activeLane() {
  return state.lanes[state.active] ?? state.lanes[0];
}

/** Restores the saved workspace, or starts from the example prompt with `model`. */
export function load(defaultModel) {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE) ?? 'null');
  } catch {
    // A workspace saved by an older page that no longer parses: start afresh.
  }
  const example = examplePrompt();
  state.system = typeof saved?.system === 'string' ? saved.system : example.system;
  state.examples = Array.isArray(saved?.examples) ? saved.examples : example.examples;
  state.variable = typeof saved?.variable === 'string' ? saved.variable : 'input';
  state.kept = saved?.kept && typeof saved.kept === 'object' ? saved.kept : {};
  const lanes = Array.isArray(saved?.lanes) && saved.lanes.length > 0 ? saved.lanes : [{ model: defaultModel, params: example.params }];
  state.lanes = lanes.slice(0, 2).map((lane, i) => newLane('AB'[i], lane.model ?? defaultModel, lane.params ?? {}));
  state.active = 0;
}

let saving = null;
/** Saves the workspace soon (typing saves once it pauses). */
export function save() {
  clearTimeout(saving);
  saving = setTimeout(() => {
    const lanes = state.lanes.map(({ model, params }) => ({ model, params }));
    const workspace = { system: state.system, examples: state.examples, variable: state.variable, kept: state.kept, lanes };
    localStorage.setItem(STORAGE, JSON.stringify(workspace));
  }, 300);
}

/** The examples that are sent: both halves written. */
export function completeExamples() {
  return state.examples.filter((e) => e.prompt.trim() !== '' && e.response.trim() !== '');
}

/**
 * The messages a lane sends for its next answer: the system message, the examples as
 * user/assistant turns, the lane's conversation, and `draft` as the newest user message.
 */
export function messagesFor(lane, draft = '') {
  const messages = [];
  if (state.system.trim() !== '') messages.push({ role: 'system', content: state.system });
  for (const example of completeExamples()) {
    messages.push({ role: 'user', content: example.prompt }, { role: 'assistant', content: example.response });
  }
  for (const message of lane.messages) {
    // An answer that failed (or is still coming) is left out with the question it answers.
    if (message.role === 'assistant' && message.status !== 'done' && message.status !== 'stopped') {
      if (messages.at(-1)?.role === 'user') messages.pop();
      continue;
    }
    messages.push({ role: message.role, content: message.content });
  }
  if (draft.trim() !== '') messages.push({ role: 'user', content: draft });
  return messages;
}
