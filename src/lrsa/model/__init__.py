"""Stage 4: the network. Fusion of text, image side and rationales; two hosts (span tagger,
index-pointer generator); the composed model with safetensors + JSON checkpoints."""
