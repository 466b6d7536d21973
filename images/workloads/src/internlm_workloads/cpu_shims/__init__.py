"""CPU adaptations for XTuner/mmengine, put on the PYTHONPATH of the tools' processes (a
``sitecustomize`` module) by the finetune stage when no CUDA GPU is present: XTuner 0.2.0 and
mmengine assume one (see sitecustomize.py). A directory of its own so that nothing else in the
package is shadowed or imported early."""
