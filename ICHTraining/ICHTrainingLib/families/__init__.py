"""One module per network family (mil, unet, cascade); each has `train_family(records, cfg,
progress) → loop.Trained`, registered in train.FAMILIES."""
