"""Stage 3: encoders. Text backbones (hub id, local path, packaged MiniLM / MPNet), word features,
frozen side-text states cached on disk, and the image side (image as text, or pixels)."""
