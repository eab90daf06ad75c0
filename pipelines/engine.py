"""One engine per loaded base model: text-to-image now, sibling tasks via ``from_pipe``.

CONTRACT (implementation in progress):

    engine = Engine.load(spec, device="cpu"|"cuda"|None)   # loads once per replica
    outputs = engine.generate([params, ...])  # list[GenerationOutput], one per params, in order
    out = engine.text_to_image(params)         # == engine.generate([params])[0]

``generate`` accepts requests that share one ``GenerationParams.batch_key`` and runs them in
as few pipeline calls as possible; it raises ValueError if keys differ. It is blocking
torch work: callers on an event loop run it in a thread.
"""
