"""The interactive demo page: `deffiller demo --model RUN` (logic in `session`, the Gradio page in `app`)."""
