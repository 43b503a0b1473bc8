scenarios_twonode() { :; }
