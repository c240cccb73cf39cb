"""BibTeX of the methods the emtools protocols implement (shown by ``orch`` and the web UI)."""
# ruff: noqa: E501 - BibTeX entries are kept one field per line, as bibliographies print them

GRANT_GRIGORIEFF_2015 = """@article{Grant2015,
  author  = {Grant, Timothy and Grigorieff, Nikolaus},
  title   = {Measuring the optimal exposure for single particle cryo-{EM} using a 2.6 {\\AA} reconstruction of rotavirus {VP6}},
  journal = {eLife},
  volume  = {4},
  pages   = {e06980},
  year    = {2015},
  doi     = {10.7554/eLife.06980}
}"""

ZHENG_2017 = """@article{Zheng2017,
  author  = {Zheng, Shawn Q. and Palovcak, Eugene and Armache, Jean-Paul and Verba, Kliment A. and Cheng, Yifan and Agard, David A.},
  title   = {{MotionCor2}: anisotropic correction of beam-induced motion for improved cryo-electron microscopy},
  journal = {Nature Methods},
  volume  = {14},
  pages   = {331--332},
  year    = {2017},
  doi     = {10.1038/nmeth.4193}
}"""

ROHOU_GRIGORIEFF_2015 = """@article{Rohou2015,
  author  = {Rohou, Alexis and Grigorieff, Nikolaus},
  title   = {{CTFFIND4}: Fast and accurate defocus estimation from electron micrographs},
  journal = {Journal of Structural Biology},
  volume  = {192},
  number  = {2},
  pages   = {216--221},
  year    = {2015},
  doi     = {10.1016/j.jsb.2015.08.008}
}"""

VOSS_2009 = """@article{Voss2009,
  author  = {Voss, N. R. and Yoshioka, C. K. and Radermacher, M. and Potter, C. S. and Carragher, B.},
  title   = {{DoG} Picker and {TiltPicker}: software tools to facilitate particle selection in single particle electron microscopy},
  journal = {Journal of Structural Biology},
  volume  = {166},
  number  = {2},
  pages   = {205--213},
  year    = {2009},
  doi     = {10.1016/j.jsb.2009.01.004}
}"""

ROSEMAN_2003 = """@article{Roseman2003,
  author  = {Roseman, A. M.},
  title   = {Particle finding in electron micrographs using a fast local correlation algorithm},
  journal = {Ultramicroscopy},
  volume  = {94},
  number  = {3-4},
  pages   = {225--236},
  year    = {2003},
  doi     = {10.1016/S0304-3991(02)00333-9}
}"""

SCHERES_2012 = """@article{Scheres2012,
  author  = {Scheres, Sjors H. W.},
  title   = {{RELION}: Implementation of a Bayesian approach to cryo-{EM} structure determination},
  journal = {Journal of Structural Biology},
  volume  = {180},
  number  = {3},
  pages   = {519--530},
  year    = {2012},
  doi     = {10.1016/j.jsb.2012.09.006}
}"""

SCHERES_CHEN_2012 = """@article{Scheres2012gold,
  author  = {Scheres, Sjors H. W. and Chen, Shaoxia},
  title   = {Prevention of overfitting in cryo-{EM} structure determination},
  journal = {Nature Methods},
  volume  = {9},
  number  = {9},
  pages   = {853--854},
  year    = {2012},
  doi     = {10.1038/nmeth.2115}
}"""

PENCZEK_1994 = """@article{Penczek1994,
  author  = {Penczek, Pawel A. and Grassucci, Robert A. and Frank, Joachim},
  title   = {The ribosome at improved resolution: new techniques for merging and orientation refinement in {3D} cryo-electron microscopy of biological particles},
  journal = {Ultramicroscopy},
  volume  = {53},
  number  = {3},
  pages   = {251--270},
  year    = {1994},
  doi     = {10.1016/0304-3991(94)90038-8}
}"""

PENCZEK_2004 = """@article{Penczek2004,
  author  = {Penczek, Pawel A. and Renka, Robert and Schomberg, Hermann},
  title   = {Gridding-based direct {Fourier} inversion of the three-dimensional ray transform},
  journal = {Journal of the Optical Society of America A},
  volume  = {21},
  number  = {4},
  pages   = {499--509},
  year    = {2004},
  doi     = {10.1364/JOSAA.21.000499}
}"""

SORZANO_2010 = """@article{Sorzano2010,
  author  = {Sorzano, C. O. S. and Bilbao-Castro, J. R. and Shkolnisky, Y. and Alcorlo, M. and Melero, R. and Caffarena-Fern{\\'a}ndez, G. and Li, M. and Xu, G. and Marabini, R. and Carazo, J. M.},
  title   = {A clustering approach to multireference alignment of single-particle projections in electron microscopy},
  journal = {Journal of Structural Biology},
  volume  = {171},
  number  = {2},
  pages   = {197--206},
  year    = {2010},
  doi     = {10.1016/j.jsb.2010.03.011}
}"""

ROSENTHAL_HENDERSON_2003 = """@article{Rosenthal2003,
  author  = {Rosenthal, Peter B. and Henderson, Richard},
  title   = {Optimal determination of particle orientation, absolute hand, and contrast loss in single-particle electron cryomicroscopy},
  journal = {Journal of Molecular Biology},
  volume  = {333},
  number  = {4},
  pages   = {721--745},
  year    = {2003},
  doi     = {10.1016/j.jmb.2003.07.013}
}"""

VAN_HEEL_SCHATZ_2005 = """@article{vanHeel2005,
  author  = {van Heel, Marin and Schatz, Michael},
  title   = {Fourier shell correlation threshold criteria},
  journal = {Journal of Structural Biology},
  volume  = {151},
  number  = {3},
  pages   = {250--262},
  year    = {2005},
  doi     = {10.1016/j.jsb.2005.05.009}
}"""

VULOVIC_2013 = """@article{Vulovic2013,
  author  = {Vulovi{\\'c}, Milo{\\v{s}} and Ravelli, Raimond B. G. and van Vliet, Lucas J. and Koster, Abraham J. and Lazi{\\'c}, Ivan and L{\\"u}cken, Uwe and Rullg{\\aa}rd, Hans and {\\"O}ktem, Ozan and Rieger, Bernd},
  title   = {Image formation modeling in cryo-electron microscopy},
  journal = {Journal of Structural Biology},
  volume  = {183},
  number  = {1},
  pages   = {19--32},
  year    = {2013},
  doi     = {10.1016/j.jsb.2013.05.008}
}"""
