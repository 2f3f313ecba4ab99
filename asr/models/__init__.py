"""The transducer and its parts, one file per architecture (``lstm``, ``conformer``, ``convrnnt``,
``predictor``, ``transducer``); ``config`` holds the model's dataclasses and ``registry`` builds a
model from them (``build_model``) and names the presets."""
