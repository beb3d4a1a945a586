"""Model endpoints: the embedded Gemma 3 270M model, the local vLLM server launcher, clients."""
