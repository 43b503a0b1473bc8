scenarios_chain() { :; }
