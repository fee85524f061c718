"""The official `openai` package against `temper serve`: what an existing application sees when
it points its base URL at Temper."""

import base64
import json
import math
import struct

import openai
import pytest

from conftest import MODEL, Upstream


def ask(client, content, **params):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **params)


def test_models_lists_the_catalog_and_the_profiles(client):
    ids = {model.id for model in client.models.list()}
    assert {MODEL, "all-minilm-l6-v2", "gateway"} <= ids
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_answers_and_counts_tokens(client):
    answer = ask(client, "What is the capital of France?", temperature=0, max_tokens=16)
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 16
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_a_stream_spells_the_same_answer_and_ends_with_usage(client):
    whole = ask(client, "Name three colours.", temperature=0, max_tokens=24)
    chunks = list(ask(client, "Name three colours.", temperature=0, max_tokens=24, stream=True,
                      stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]


def test_stop_sequences_end_the_answer_before_them(client):
    answer = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=24, temperature=0, stop=["8"])
    text = answer.choices[0].text
    assert "6" in text and "8" not in text
    assert answer.choices[0].finish_reason == "stop"


def test_a_seed_makes_sampling_repeatable(client):
    params = dict(temperature=1.0, max_tokens=24, seed=42)
    first = ask(client, "Tell me about the sea.", **params).choices[0].message.content
    again = ask(client, "Tell me about the sea.", **params).choices[0].message.content
    assert first == again
    others = {ask(client, "Tell me about the sea.", **dict(params, seed=s)).choices[0].message.content for s in (1, 2, 3)}
    assert others != {first}, "other seeds sample other answers"


def test_extensions_pass_through_extra_body(client):
    answer = ask(client, "Hi", max_tokens=8, extra_body={"top_k": 1, "min_p": 0.05, "repeat_penalty": 1.1})
    greedy = ask(client, "Hi", max_tokens=8, temperature=0)
    assert answer.choices[0].message.content == greedy.choices[0].message.content, "top_k 1 is greedy"


def test_logprobs_of_the_chosen_tokens_and_their_alternatives(client):
    answer = ask(client, "Name a colour.", temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
    tokens = answer.choices[0].logprobs.content
    assert 0 < len(tokens) <= 8
    assert "".join(t.token for t in tokens) == answer.choices[0].message.content
    for token in tokens:
        assert token.logprob <= 0 and len(token.top_logprobs) == 3
        # Greedy: the chosen token is the likeliest one.
        assert token.top_logprobs[0].token == token.token
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob, abs=1e-4)
        assert sum(math.exp(alt.logprob) for alt in token.top_logprobs) <= 1.0 + 1e-4


def test_completions_continue_raw_text(client):
    answer = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0)
    assert answer.object == "text_completion" and answer.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0, stream=True) if c.choices)
    assert streamed == answer.choices[0].text


def test_embeddings_as_floats_and_as_base64(client):
    texts = ["The cat sits on the mat.", "A feline rests on a rug.", "Stock markets fell today."]
    floats = client.embeddings.create(model="all-minilm-l6-v2", input=texts, encoding_format="float")
    assert [e.index for e in floats.data] == [0, 1, 2] and len(floats.data[0].embedding) == 384
    raw = client.embeddings.with_raw_response.create(model="all-minilm-l6-v2", input=texts, encoding_format="base64")
    for item, expected in zip(raw.http_response.json()["data"], floats.data):
        packed = base64.b64decode(item["embedding"])
        assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(expected.embedding, abs=1e-6)
    decoded = client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # the client's own default
    assert decoded.data[2].embedding == pytest.approx(floats.data[2].embedding, abs=1e-6)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))
    cat, feline, stocks = (e.embedding for e in floats.data)
    assert dot(cat, feline) > dot(cat, stocks)
    assert floats.usage.prompt_tokens > 0


def test_errors_raise_the_clients_own_exceptions(client, keyed_server):
    with pytest.raises(openai.BadRequestError) as bad:
        ask(client, "Hi", temperature=5)
    assert bad.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        ask(client, "Hi", n=2)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as overflow:
        ask(client, "word " * 5000, max_tokens=4)
    assert overflow.value.body["code"] == "context_length_exceeded"

    wrong = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    right = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="sk-interop", max_retries=0)
    assert ask(right, "Hi", max_tokens=4).choices[0].message.content is not None


def test_a_profile_makes_temper_a_gateway_for_tools_and_json(client):
    Upstream.received.clear()
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    answer = client.chat.completions.create(model="gateway", messages=[{"role": "user", "content": "Weather in Paris?"}],
                                            tools=[weather], tool_choice="required")
    call = answer.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "get_weather", '{"city": "Paris"}')
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.usage.model_extra["cost"] == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    sent = Upstream.received[-1]
    assert sent["auth"] == "Bearer sk-upstream", "the profile's own key goes upstream"
    assert sent["body"]["tools"][0]["function"]["name"] == "get_weather" and sent["body"]["tool_choice"] == "required"

    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    answer = client.chat.completions.create(
        model="gateway", messages=[{"role": "user", "content": "Capital of France as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema, "strict": True}})
    assert answer.choices[0].message.content == '{"capital": "Paris"}'
    assert Upstream.received[-1]["body"]["response_format"]["json_schema"]["schema"] == schema

    streamed = list(client.chat.completions.create(
        model="gateway", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[weather], stream=True))
    calls = [tc for c in streamed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather" and calls[0].function.arguments == '{"city": "Paris"}'


def test_local_models_call_tools_and_answer_json_by_construction(client):
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                              "required": ["city"], "additionalProperties": False}}}
    asked = dict(tools=[weather], tool_choice="required", temperature=0, max_tokens=60)
    answer = ask(client, "What is the weather in Paris?", **asked)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert set(json.loads(call.function.arguments)) == {"city"}

    # Streamed, the call comes as deltas: the id and name first, then the arguments in pieces.
    chunks = list(ask(client, "What is the weather in Paris?", stream=True, **asked))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and len(deltas) > 2
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == json.loads(call.function.arguments)
    assert not any(c.choices[0].delta.content for c in chunks if c.choices), "no call streams as text"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]

    person = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
              "age": {"type": "integer", "minimum": 0, "maximum": 150}},
              "required": ["name", "age"], "additionalProperties": False}
    answer = ask(client, "Alice is 31. Give her name and age as JSON.", temperature=0, max_tokens=40,
                 response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": person}})
    data = json.loads(answer.choices[0].message.content)
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)

    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, "Hi", response_format={"type": "json_schema",
                                           "json_schema": {"name": "bad", "schema": {"type": "object", "required": 3}}})
    assert "response_format" in refused.value.message
