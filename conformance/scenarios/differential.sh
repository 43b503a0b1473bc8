scenarios_differential() { :; }
