"""What backends share, free of any inference engine.

A backend package imports only :mod:`specs_core`; the pieces that several backends need live
here so that no backend imports another:

- :mod:`~specs_core.backend_kit.http`: pooled HTTP clients with timeouts, retries and replicas
  (the SGLang and OpenAI-compatible backends, served reward models);
- :mod:`~specs_core.backend_kit.chat`: the one chat-template renderer (Jinja templates set up like
  Hugging Face ``apply_chat_template``, built-in templates for servers);
- :mod:`~specs_core.backend_kit.artifacts`: GGUF model sourcing (local files, the hub, models
  embedded in registry packages) with checksum verification;
- :mod:`~specs_core.backend_kit.ngram`: the n-gram drafter and the lossless acceptance rule of
  token-level speculative decoding.

Each module is imported on its own; importing this package imports none of them.
"""
