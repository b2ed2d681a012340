"""Pictures: instance overlays and error maps of images (:mod:`.images`), figures of training and
results (:mod:`.plots`, reading their inputs through :mod:`.plot_inputs`)."""
