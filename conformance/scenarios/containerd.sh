scenarios_containerd() { :; }
