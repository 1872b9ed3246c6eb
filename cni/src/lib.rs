//! husk-cni: CNI types, plugin invocation and the husk plugins.
