"""Source readers, one module per framework: load safely, describe I/O, run for reference outputs.

Which reader serves which content is declared by the format modules (`modelport.formats`); every
command loads models through `modelport.loading`."""
