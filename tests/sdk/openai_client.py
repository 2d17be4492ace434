"""Talks to clawden with the official `openai` package, as any OpenAI SDK user would.

Usage: python openai_client.py BASE_URL API_KEY
Prints one line per check and exits non-zero on the first failure.
"""
import sys

from openai import OpenAI


def main() -> int:
    base_url, api_key = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)

    models = [m.id for m in client.models.list()]
    assert "clawden" in models, models
    print("models:", models)

    reply = client.chat.completions.create(
        model="clawden",
        messages=[{"role": "user", "content": "hello from the sdk"}],
    )
    text = reply.choices[0].message.content
    assert "hello from the sdk" in text, text
    assert reply.choices[0].finish_reason == "stop"
    print("non-stream:", text)

    stream = client.chat.completions.create(
        model="clawden",
        messages=[{"role": "user", "content": "stream from the sdk"}],
        stream=True,
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    streamed = "".join(parts)
    assert "stream from the sdk" in streamed, streamed
    print("stream:", streamed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
