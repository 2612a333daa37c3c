"""Text embeddings behind one interface: `await embedder.embed(texts)` returns an (n, d) float32
matrix of unit-normalised rows, in the order of `texts`.

Providers: an OpenAI-compatible `POST {base_url}/embeddings`, Gemini `batchEmbedContents`, and a
local sentence-transformers model (the optional `local-embeddings` extra). Every vector is cached
in Postgres under the embedder's identity and the text's hash, so a text is embedded (and paid
for) once, whichever process asks.
"""

from specstress.embeddings.embedder import Embedder, embedder_hash, open_embedder, text_hash

__all__ = ["Embedder", "embedder_hash", "open_embedder", "text_hash"]
