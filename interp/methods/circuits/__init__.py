"""Edge-level circuit discovery for Phi's parallel blocks: the graph, exact edge patching, EAP and
EAP-IG, selection, circuit evaluation, faithfulness curves (CPR, CMD) and EAP-IG's JSON layout."""
