% MNIST addition (Manhaeve et al. 2018) as a `logic` protocol program:
%   protocol = {name = "logic", program = "mnist_addition", label = "A + B"}
% `a` and `b` name each example's two images; the label is the sum of their classes.
nn(digit_net, [X], Y, [0,1,2,3,4,5,6,7,8,9]) :: digit(X, Y).
addition(X, Y, Z) :- digit(X, A), digit(Y, B), Z is A + B.
query(addition(a, b, Z)).
