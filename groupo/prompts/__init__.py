"""How prompts look (axis ``template``): ``templates`` (the tokenizer's chat template, or plain
prefix + question + suffix) and ``augmentation`` (prompt augmentation: many reasoning templates,
each with its own format reward)."""
